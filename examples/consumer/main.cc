// consumer_cxx DIR: the C++ API through an installed varve: appends, a stream
// read, a subscription, a parallel replay, an aggregate snapshot loaded with
// load_aggregate and a columnar snapshot round trip. Exits 0 only if each
// gives back what was written. The templates used here (replay::run,
// load_aggregate, snapshot_policy) are instantiated in this program, so
// linking it against libvarve.so shows they need only exported symbols.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <varve/columnar.h>  // not (yet) part of varve/varve.h
#include <varve/varve.h>

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer_cxx: %s\n", what);
    std::exit(1);
  }
}
template <class T>
T take(varve::result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "consumer_cxx: %s: %s\n", what, r.error().to_string().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

int64_t amount_of(const varve::event_view& e) {
  int64_t v = 0;
  std::memcpy(&v, e.payload.data(), sizeof v);
  return v;
}

struct balances {  // a replay projection: one per partition
  int64_t total = 0;
  uint64_t events = 0;
  void apply(const varve::event_view& e) {
    total += amount_of(e);
    ++events;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  auto log = take(varve::event_log::create(argv[1], {.segment_bytes = 1 << 20}), "create");
  auto types = take(varve::type_registry::open(argv[1]), "type registry");
  const uint32_t deposited = take(types.id_for("Deposited"), "type id");

  // 10 accounts x 20 deposits of 1..20: each account ends at 210.
  for (int i = 1; i <= 20; ++i)
    for (uint64_t a = 0; a < 10; ++a) {
      const int64_t amount = i;
      varve::event_data d{.type = deposited,
                          .payload = std::as_bytes(std::span(&amount, 1))};
      take(log->append(varve::stream_id::from_u64(a), varve::expected_version::exact(i - 1), d),
           "append");
    }
  require(log->version_of(varve::stream_id::from_u64(3)) == 20, "version_of");

  auto rs = take(log->read_stream(varve::stream_id::from_u64(3), varve::kLatestVersion,
                                  varve::read_direction::backward, 5),
                 "read_stream");
  varve::event_view ev;
  int64_t newest_five = 0;
  while (take(rs.next(ev), "stream next")) newest_five += amount_of(ev);
  require(newest_five == 20 + 19 + 18 + 17 + 16, "backward stream read");

  auto sub = take(varve::subscription::open(*log, varve::position{},
                                            varve::event_filter{.types = {deposited}}),
                  "subscription");
  uint64_t seen = 0;
  while (take(sub.next(ev), "subscription next")) ++seen;
  require(seen == 200, "subscription history");

  auto r = varve::replay(*log).threads(2).partitions(4).run([](uint32_t) { return balances{}; });
  require(static_cast<bool>(r), "replay");
  const int64_t total =
      r.reduce(int64_t{0}, [](int64_t a, const balances& b) { return a + b.total; });
  require(total == 10 * 210, "replay total");

  // An aggregate snapshot at version 10, then load_aggregate folds 11..20 on it.
  auto store = take(varve::snapshot_store::open(*log), "snapshot store");
  const int64_t at_10 = 55;
  require(store->save(varve::stream_id::from_u64(3), 10, 1, std::as_bytes(std::span(&at_10, 1)))
              .ok(),
          "snapshot save");
  auto loaded = take(varve::load_aggregate<int64_t>(
                         *log, *store, varve::stream_id::from_u64(3), 1,
                         [](std::span<const std::byte> b) {
                           int64_t v = 0;
                           std::memcpy(&v, b.data(), sizeof v);
                           return v;
                         },
                         [](int64_t& s, const varve::event_view& e) { s += amount_of(e); }),
                     "load_aggregate");
  require(loaded.used_snapshot && loaded.events_applied == 10 && loaded.state == 210,
          "load_aggregate from the snapshot");

  varve::columnar::schema schema({{"id", varve::columnar::column_type::u64}});
  varve::columnar::encoder enc(schema);
  std::vector<uint64_t> ids{3, 1, 4, 1, 5};
  enc.add_u64(0, ids);
  const std::string bytes = take(enc.finish(log->committed_position(), 1), "columnar encode");
  auto dec = take(varve::columnar::decoder::open(bytes), "columnar decode");
  std::vector<uint64_t> back;
  require(dec.read_u64(0, back).ok() && back == ids, "columnar round trip");

  require(log->close().ok(), "close");
  auto report = take(varve::verify_log(argv[1]), "verify");
  require(report.first_problem.ok() && report.events == 200, "verify");
  std::printf("consumer_cxx: ok (%lu events, balance %ld)\n",
              static_cast<unsigned long>(report.events), static_cast<long>(total));
  return 0;
}
