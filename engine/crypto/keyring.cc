#include "engine/crypto/keyring.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <tuple>

#include "base/coding.h"
#include "base/log_files.h"
#include "index/index_file.h"

namespace varve {

namespace {

constexpr char kKeysMagic[8] = {'V', 'A', 'R', 'V', 'E', 'K', 'E', 'Y'};
constexpr char kJournalMagic[8] = {'V', 'A', 'R', 'V', 'E', 'F', 'G', 'T'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kEntry = detail::keyring::kEntrySize;
// Address space reserved for the read-only mapping of DIR/keys: 2^27 slots.
constexpr uint64_t kMapBytes = uint64_t{1} << 34;
constexpr uint64_t kMaxSlots = kMapBytes / kEntry;
constexpr uint32_t kChunk = 4096;  // cached keys per chunk
constexpr uint32_t kMaxBatch = 4096;
constexpr uint32_t kJournalHeader = 64;
constexpr uint32_t kLive = 1, kDestroyed = 2;

constexpr char kCheckDomain[] = "varve-keys-check-1";
constexpr char kWrapDomain[] = "varve-key-1";
constexpr char kEventDomain[] = "varve-event-1";

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

status sodium_ready() {
  static const int r = sodium_init();
  if (r < 0) return status(errc::io_error, "libsodium could not be initialised");
  return {};
}

void key_check(const std::array<uint8_t, 32>& master, uint64_t log_id, uint8_t out[32]) {
  uint8_t in[sizeof kCheckDomain - 1 + 8];
  std::memcpy(in, kCheckDomain, sizeof kCheckDomain - 1);
  coding::put_u64(in + sizeof kCheckDomain - 1, log_id);
  crypto_generichash(out, 32, in, sizeof in, master.data(), master.size());
}

// Associated data of a wrapped key: binds it to its log and slot.
void wrap_ad(uint64_t log_id, uint64_t slot, uint8_t out[sizeof kWrapDomain - 1 + 16]) {
  std::memcpy(out, kWrapDomain, sizeof kWrapDomain - 1);
  coding::put_u64(out + sizeof kWrapDomain - 1, log_id);
  coding::put_u64(out + sizeof kWrapDomain - 1 + 8, slot);
}
constexpr size_t kWrapAd = sizeof kWrapDomain - 1 + 16;

// Associated data of an event's payload: its log, key slot and stream.
size_t event_ad(uint64_t log_id, uint32_t slot, std::string_view stream, uint8_t* out) {
  std::memcpy(out, kEventDomain, sizeof kEventDomain - 1);
  size_t n = sizeof kEventDomain - 1;
  coding::put_u64(out + n, log_id);
  coding::put_u32(out + n + 8, slot);
  n += 12;
  std::memcpy(out + n, stream.data(), stream.size());
  return n + stream.size();
}
constexpr size_t kEventAdMax = sizeof kEventDomain - 1 + 12 + kMaxStreamIdBytes;

std::string hex_of(uint8_t b) {
  static const char* k = "0123456789abcdef";
  return {k[b >> 4], k[b & 15]};
}

}  // namespace

// ---------------------------------------------------------------- master keys

master_key generate_master_key() {
  (void)sodium_ready();
  master_key k;
  randombytes_buf(k.bytes.data(), k.bytes.size());
  return k;
}

result<master_key> load_master_key(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return status(errc::not_found, path + ": " + std::strerror(errno));
  std::string text(200, '\0');
  ssize_t got = 0;
  for (;;) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
    if (static_cast<size_t>(got) == text.size()) break;
  }
  ::close(fd);
  text.resize(static_cast<size_t>(got));
  master_key k;
  if (text.size() == 32) {
    std::memcpy(k.bytes.data(), text.data(), 32);
    return k;
  }
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (t.size() == 64) {
    bool ok = true;
    for (size_t i = 0; i < 32 && ok; ++i) {
      const int hi = nib(t[2 * i]), lo = nib(t[2 * i + 1]);
      ok = hi >= 0 && lo >= 0;
      k.bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    sodium_memzero(t.data(), t.size());
    sodium_memzero(text.data(), text.size());
    if (ok) return k;
  }
  return status(errc::invalid_argument, path + ": not a master key (64 hex digits, or 32 raw bytes; " +
                                            std::to_string(text.size()) + " bytes found)");
}

status save_master_key(const std::string& path, const master_key& key) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return status(errno == EEXIST ? errc::already_exists : errc::io_error, path + ": " + std::strerror(errno));
  std::string t;
  for (uint8_t b : key.bytes) t += hex_of(b);
  t += '\n';
  status s;
  if (::write(fd, t.data(), t.size()) != static_cast<ssize_t>(t.size()) || ::fsync(fd) != 0)
    s = status(errc::io_error, path + ": " + std::strerror(errno));
  ::close(fd);
  sodium_memzero(t.data(), t.size());
  return s;
}

namespace detail {

// One unwrapped key. A seqlock: state 1 = the words hold the key; readers
// copy them and check the state again, so a forget that zeroes them (state
// 2 first) never hands a reader half a key.
struct keyring::cached {
  std::atomic<uint32_t> state{0};  // 0 not loaded, 1 live, 2 destroyed or damaged
  uint64_t words[4] = {};
};

keyring::keyring(std::shared_ptr<file_system> fs, std::string dir, uint64_t log_id, const master_key& key,
                 bool writable)
    : fs_(std::move(fs)),
      dir_(std::move(dir)),
      path_(log_files::join(dir_, kKeysName)),
      log_id_(log_id),
      master_(key.bytes),
      writable_(writable),
      chunks_(new std::atomic<cached*>[kMaxSlots / kChunk]) {
  for (uint64_t i = 0; i < kMaxSlots / kChunk; ++i) chunks_[i].store(nullptr, std::memory_order_relaxed);
}

keyring::~keyring() {
  for (uint64_t i = 0; i < kMaxSlots / kChunk; ++i)
    if (cached* c = chunks_[i].load(std::memory_order_relaxed)) {
      sodium_memzero(c, sizeof(cached) * kChunk);  // plain memory by now: no reader is left
      delete[] c;
    }
  sodium_memzero(master_.data(), master_.size());
  if (map_) fs_->unmap(const_cast<std::byte*>(map_), kMapBytes);
  if (file_.valid()) fs_->close(file_);
}

bool keyring::exists(file_system& fs, const std::string& dir) {
  return fs.exists(log_files::join(dir, kKeysName));
}

result<std::shared_ptr<keyring>> keyring::open(std::shared_ptr<file_system> fs, const std::string& dir,
                                               uint64_t log_id, const master_key& key, bool writable,
                                               bool create) {
  if (status s = sodium_ready(); !s) return s;
  const std::string path = log_files::join(dir, kKeysName);
  uint8_t check[32];
  key_check(key.bytes, log_id, check);
  if (!fs->exists(path)) {
    if (!create) return status(errc::not_found, path + ": the log has no keys (it was not given a master key)");
    // The journal first: a log with DIR/keys always has one to append to.
    std::byte jh[kJournalHeader] = {};
    std::memcpy(jh, kJournalMagic, 8);
    coding::put_u32(jh + 8, kVersion);
    coding::put_u64(jh + 16, log_id);
    coding::put_u64(jh + 56, XXH3_64bits(jh, 56));
    if (!fs->exists(log_files::join(dir, kJournalName)))
      if (status s = index_file::write(*fs, dir, kJournalName, std::span<const std::byte>(jh, sizeof jh)); !s)
        return s;
    std::byte h[kEntry] = {};
    std::memcpy(h, kKeysMagic, 8);
    coding::put_u32(h + 8, kVersion);
    coding::put_u64(h + 16, log_id);
    std::memcpy(h + 24, check, 32);
    coding::put_u64(h + 120, XXH3_64bits(h, 120));
    if (status s = index_file::write(*fs, dir, kKeysName, std::span<const std::byte>(h, sizeof h)); !s) return s;
  }
  std::shared_ptr<keyring> k(new keyring(fs, dir, log_id, key, writable));
  auto f = fs->open(path, writable ? file_system::open_mode::read_write : file_system::open_mode::read_only);
  if (!f) return f.error();
  k->file_ = f.value();
  auto size = fs->file_size(k->file_);
  if (!size) return size.error();
  std::byte h[kEntry];
  if (size.value() < kEntry) return status(errc::corruption, path + " offset 0: truncated header");
  if (status s = fs->pread(k->file_, 0, h, kEntry); !s) return s;
  if (std::memcmp(h, kKeysMagic, 8) != 0 || coding::get_u64(h + 120) != XXH3_64bits(h, 120))
    return status(errc::corruption, path + " offset 0: bad keys header");
  if (coding::get_u32(h + 8) > kVersion)
    return status(errc::newer_format, path + ": keys format " + std::to_string(coding::get_u32(h + 8)) +
                                          " is newer than this varve reads (" + std::to_string(kVersion) + ")");
  if (coding::get_u64(h + 16) != log_id) return status(errc::corruption, path + ": the keys of another log");
  if (sodium_memcmp(h + 24, check, 32) != 0)
    return status(errc::invalid_argument, path + ": the master key given is not this log's");
  auto m = fs->map(k->file_, kMapBytes, map_access::read_only);
  if (!m) return m.error();
  k->map_ = static_cast<const std::byte*>(m.value());
  k->known_size_.store(size.value(), std::memory_order_relaxed);
  if (writable) {
    // New keys go after every whole entry there is: a batch a crash cut
    // short was never used (a key is durable before any record names it).
    k->file_end_ = k->range_end_ = k->next_slot_ = (size.value() + kEntry - 1) / kEntry;
    randombytes_buf(k->nonce_prefix_.data(), k->nonce_prefix_.size());
  }
  return k;
}

uint64_t keyring::slots_in_file() const { return known_size_.load(std::memory_order_acquire) / kEntry; }

bool keyring::live_in_file(uint32_t slot) const {
  // The writer's pwrite changes this word in the page cache this shared
  // mapping reads: a forget in any process is seen here at once.
  const auto* w = reinterpret_cast<const uint32_t*>(map_ + uint64_t{slot} * kEntry + 8);
  return __atomic_load_n(w, __ATOMIC_RELAXED) == kLive;
}

const keyring::cached* keyring::key_of(uint32_t slot, std::string& why) const {
  if (slot == 0 || slot >= kMaxSlots) {
    why = "names key slot " + std::to_string(slot) + ", which cannot exist";
    return nullptr;
  }
  cached* chunk = chunks_[slot / kChunk].load(std::memory_order_acquire);
  if (chunk) [[likely]] {
    const cached& c = chunk[slot % kChunk];
    const uint32_t st = c.state.load(std::memory_order_acquire);
    if (st == 1) [[likely]]
      return &c;
    if (st == 2) return nullptr;
  }
  std::lock_guard<std::mutex> g(mu_);
  chunk = chunks_[slot / kChunk].load(std::memory_order_relaxed);
  if (!chunk) {
    chunk = new cached[kChunk];
    chunks_[slot / kChunk].store(chunk, std::memory_order_release);
  }
  cached& c = chunk[slot % kChunk];
  const uint32_t st = c.state.load(std::memory_order_relaxed);
  if (st == 1) return &c;
  if (st == 2) return nullptr;
  if (slot >= slots_in_file()) {
    if (auto size = fs_->file_size(file_)) known_size_.store(size.value(), std::memory_order_release);
    if (slot >= slots_in_file()) {
      why = "names key slot " + std::to_string(slot) + ", but " + path_ + " holds " +
            std::to_string(slots_in_file() ? slots_in_file() - 1 : 0) + " keys";
      return nullptr;
    }
  }
  const std::byte* e = map_ + uint64_t{slot} * kEntry;
  const uint64_t off = uint64_t{slot} * kEntry;
  if (coding::get_u64(e + 120) != XXH3_64bits(e, 120) || coding::get_u64(e) != slot) {
    why = "needs the key at " + path_ + " offset " + std::to_string(off) +
          ", which fails its checksum (a damaged key file: its events cannot be read)";
    return nullptr;
  }
  const uint32_t state = coding::get_u32(e + 8);
  if (state == kDestroyed) {
    c.state.store(2, std::memory_order_release);
    return nullptr;  // forgotten: why stays empty
  }
  uint8_t ad[kWrapAd];
  wrap_ad(log_id_, slot, ad);
  uint8_t plain[32];
  if (state != kLive ||
      crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
          plain, nullptr, reinterpret_cast<const uint8_t*>(e + 40), 32, reinterpret_cast<const uint8_t*>(e + 72),
          ad, sizeof ad, reinterpret_cast<const uint8_t*>(e + 16), master_.data()) != 0) {
    why = "needs the key at " + path_ + " offset " + std::to_string(off) + ", which does not unwrap";
    return nullptr;
  }
  for (int i = 0; i < 4; ++i) std::atomic_ref<uint64_t>(c.words[i]).store(coding::get_u64(plain + 8 * i), std::memory_order_relaxed);
  sodium_memzero(plain, sizeof plain);
  c.state.store(1, std::memory_order_release);
  return &c;
}

status keyring::open_payload(event_view& ev, std::string& buf) const {
  auto bad = [&](const std::string& what) {
    return status(errc::corruption, dir_ + ": the encrypted payload of the event at position " +
                                        std::to_string(ev.position.value) + " " + what);
  };
  if (ev.payload.size() < kSealOverhead) return bad("is shorter than its nonce and tag");
  const auto* p = reinterpret_cast<const uint8_t*>(ev.payload.data());
  const uint32_t slot = coding::get_u32(p);
  std::string why;
  const cached* c = key_of(slot, why);
  if (!c) {
    if (!why.empty()) return bad(why);
    ev.payload = {};
    ev.forgotten = true;
    return {};
  }
  if (!live_in_file(slot)) {
    ev.payload = {};
    ev.forgotten = true;
    return {};
  }
  uint64_t k[4];
  for (int i = 0; i < 4; ++i)
    k[i] = std::atomic_ref<uint64_t>(const_cast<uint64_t&>(c->words[i])).load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (c->state.load(std::memory_order_relaxed) != 1) {  // destroyed while copied
    sodium_memzero(k, sizeof k);
    ev.payload = {};
    ev.forgotten = true;
    return {};
  }
  const size_t n = ev.payload.size() - kSealOverhead;
  if (buf.size() < n) buf.resize(n);
  uint8_t ad[kEventAdMax];
  const size_t adn = event_ad(log_id_, slot, ev.stream, ad);
  const int r = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
      reinterpret_cast<uint8_t*>(buf.data()), nullptr, p + 28, n, p + 28 + n, ad, adn, p + 4,
      reinterpret_cast<const uint8_t*>(k));
  sodium_memzero(k, sizeof k);
  if (r != 0) return bad("does not authenticate with its stream's key (slot " + std::to_string(slot) + ")");
  ev.payload = std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf.data()), n);
  return {};
}

void keyring::seal(uint32_t slot, std::string_view stream, std::span<const std::byte> plain, std::byte* dst) {
  std::string why;
  const cached* c = key_of(slot, why);  // the writer's own: live (writer_slot checked it)
  uint8_t* d = reinterpret_cast<uint8_t*>(dst);
  coding::put_u32(d, slot);
  std::memcpy(d + 4, nonce_prefix_.data(), 16);
  coding::put_u64(d + 20, nonce_counter_++);
  uint8_t ad[kEventAdMax];
  const size_t adn = event_ad(log_id_, slot, stream, ad);
  uint8_t k[32];
  for (int i = 0; i < 4; ++i) coding::put_u64(k + 8 * i, c->words[i]);
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(d + 28, d + 28 + plain.size(), nullptr,
                                                      reinterpret_cast<const uint8_t*>(plain.data()),
                                                      plain.size(), ad, adn, nullptr, d + 4, k);
  sodium_memzero(k, sizeof k);
}

bool keyring::usable(uint32_t slot) const {
  // The writer's own view suffices: only the writer forgets, and its forget
  // marks the cached key destroyed (the state word in the file is for
  // readers in other processes).
  std::string why;
  return key_of(slot, why) != nullptr;
}

result<uint64_t> keyring::make_batch(uint32_t n) {
  uint64_t first = 0;
  {
    std::lock_guard<std::mutex> g(batch_mu_);
    if (file_end_ + n > kMaxSlots)
      return status(errc::no_space, path_ + ": the key file is full (" + std::to_string(kMaxSlots - 1) + " keys)");
    first = file_end_;
    file_end_ += n;
  }
  std::vector<std::byte> out(size_t{n} * kEntry);
  std::vector<cached*> made(n);
  uint8_t key[32], ad[kWrapAd];
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t slot = first + i;
    std::byte* e = out.data() + size_t{i} * kEntry;
    coding::put_u64(e, slot);
    coding::put_u32(e + 8, kLive);
    randombytes_buf(key, 32);
    randombytes_buf(e + 16, 24);
    wrap_ad(log_id_, slot, ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(reinterpret_cast<uint8_t*>(e + 40),
                                                        reinterpret_cast<uint8_t*>(e + 72), nullptr, key, 32, ad,
                                                        sizeof ad, nullptr, reinterpret_cast<uint8_t*>(e + 16),
                                                        master_.data());
    coding::put_u64(e + 120, XXH3_64bits(e, 120));
    {
      std::lock_guard<std::mutex> g(mu_);
      cached* chunk = chunks_[slot / kChunk].load(std::memory_order_relaxed);
      if (!chunk) {
        chunk = new cached[kChunk];
        chunks_[slot / kChunk].store(chunk, std::memory_order_release);
      }
      made[i] = &chunk[slot % kChunk];
      for (int w = 0; w < 4; ++w)
        std::atomic_ref<uint64_t>(made[i]->words[w]).store(coding::get_u64(key + 8 * w), std::memory_order_relaxed);
    }
  }
  sodium_memzero(key, sizeof key);
  // Durable before any record can name one of them. A batch that fails is
  // never handed out; its slots stay unused.
  status s = fs_->pwrite(file_, first * kEntry, out.data(), out.size());
  if (s) s = fs_->datasync(file_);
  if (!s) return s;
  for (uint32_t i = 0; i < n; ++i) made[i]->state.store(1, std::memory_order_release);
  const uint64_t end_bytes = (first + n) * kEntry;
  uint64_t known = known_size_.load(std::memory_order_relaxed);
  while (known < end_bytes && !known_size_.compare_exchange_weak(known, end_bytes, std::memory_order_release)) {
  }
  return first;
}

result<uint32_t> keyring::new_slot() {
  if (next_slot_ == range_end_) {
    bool took = false;
    {
      std::lock_guard<std::mutex> g(batch_mu_);
      if (!ready_.empty()) {
        std::tie(next_slot_, range_end_) = ready_.front();
        ready_.erase(ready_.begin());
        took = true;
      }
    }
    if (!took) {
      auto first = make_batch(batch_);
      if (!first) return first.error();
      next_slot_ = first.value();
      range_end_ = first.value() + batch_;
    }
    batch_ = std::min(batch_ * 2, kMaxBatch);
  }
  const uint32_t slot = static_cast<uint32_t>(next_slot_++);
  // The next batch, made ahead once half of this one is used.
  if (runner_ && range_end_ - next_slot_ <= batch_ / 2) {
    std::lock_guard<std::mutex> g(batch_mu_);
    if (!making_ && ready_.empty()) {
      making_ = true;
      runner_([self = shared_from_this(), n = batch_] {
        auto first = self->make_batch(n);
        std::lock_guard<std::mutex> g(self->batch_mu_);
        if (first) self->ready_.emplace_back(first.value(), first.value() + n);
        self->making_ = false;  // a failure: the writer makes the next batch itself and meets it
      });
    }
  }
  return slot;
}

status keyring::write_destroyed(uint32_t slot) {
  std::byte e[kEntry] = {};
  coding::put_u64(e, slot);
  coding::put_u32(e + 8, kDestroyed);
  coding::put_u64(e + 120, XXH3_64bits(e, 120));
  if (status s = fs_->pwrite(file_, uint64_t{slot} * kEntry, e, kEntry); !s) return s;
  // This process's copy goes too (readers mid-copy see the state change).
  cached* chunk = chunks_[slot / kChunk].load(std::memory_order_acquire);
  if (chunk) {
    std::lock_guard<std::mutex> g(mu_);
    cached& c = chunk[slot % kChunk];
    c.state.store(2, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (uint64_t& w : c.words) std::atomic_ref<uint64_t>(w).store(0, std::memory_order_relaxed);
  }
  return {};
}

result<std::vector<keyring::journal_entry>> keyring::read_journal_entries(file_system& fs, const std::string& dir,
                                                                          uint64_t log_id, uint64_t* valid_end) {
  const std::string path = log_files::join(dir, kJournalName);
  std::vector<journal_entry> out;
  if (!fs.exists(path)) {
    if (valid_end) *valid_end = 0;
    return out;
  }
  auto got = index_file::read(fs, path, 0);
  if (!got) return got.error();
  const std::vector<std::byte>& b = got.value();
  if (b.size() < kJournalHeader || std::memcmp(b.data(), kJournalMagic, 8) != 0 ||
      coding::get_u64(b.data() + 56) != XXH3_64bits(b.data(), 56))
    return status(errc::corruption, path + " offset 0: bad journal header");
  if (coding::get_u32(b.data() + 8) > kVersion)
    return status(errc::newer_format, path + ": journal format newer than this varve reads");
  if (coding::get_u64(b.data() + 16) != log_id) return status(errc::corruption, path + ": the journal of another log");
  uint64_t at = kJournalHeader;
  while (at < b.size()) {
    const std::byte* e = b.data() + at;
    const uint64_t left = b.size() - at;
    const uint32_t len = left >= 8 ? coding::get_u32(e) : 0;
    const uint32_t n = left >= 8 ? coding::get_u32(e + 4) : 0;
    const bool sane = left >= 32 && len >= 40 && len % 8 == 0 && len <= left && n >= 1 &&
                      coding::get_u8(e + 24) >= 1 &&
                      len == coding::align8(32 + uint64_t{n} * 4 + coding::get_u8(e + 24)) + 8 &&
                      coding::get_u64(e + len - 8) == XXH3_64bits(e, len - 8);
    if (!sane) {
      // A forget a crash cut short is the last thing in the file: its
      // claimed extent reaches the end, or what is left is zeros.
      const bool reaches_end = left < 8 || (len >= 40 && len % 8 == 0 && len >= left);
      const bool zeros = std::all_of(e, b.data() + b.size(), [](std::byte x) { return x == std::byte{0}; });
      if (reaches_end || zeros) break;
      return status(errc::corruption, path + " offset " + std::to_string(at) + ": damaged forget record");
    }
    journal_entry j;
    j.seq = coding::get_u64(e + 8);
    j.time_ns = coding::get_u64(e + 16);
    j.integer = coding::get_u8(e + 25) & 1;
    for (uint32_t i = 0; i < n; ++i) j.slots.push_back(coding::get_u32(e + 32 + 4 * i));
    j.stream.assign(reinterpret_cast<const char*>(e + 32 + 4 * uint64_t{n}), coding::get_u8(e + 24));
    if (j.seq != (out.empty() ? 1 : out.back().seq + 1))
      return status(errc::corruption, path + " offset " + std::to_string(at) + ": forget number " +
                                          std::to_string(j.seq) + " out of order");
    out.push_back(std::move(j));
    at += len;
  }
  if (valid_end) *valid_end = at;
  return out;
}

result<std::vector<forgotten_stream>> keyring::read_journal(file_system& fs, const std::string& dir,
                                                            uint64_t log_id) {
  auto got = read_journal_entries(fs, dir, log_id, nullptr);
  if (!got) return got.error();
  std::vector<forgotten_stream> out;
  for (journal_entry& j : got.value())
    out.push_back({j.seq, j.time_ns, std::move(j.stream), j.integer});
  return out;
}

result<uint64_t> keyring::finish_forgets() {
  auto got = read_journal_entries(*fs_, dir_, log_id_, &journal_end_);
  if (!got) return got.error();
  journal_seq_ = got.value().empty() ? 0 : got.value().back().seq;
  uint64_t done = 0;
  for (const journal_entry& j : got.value())
    for (uint32_t slot : j.slots) {
      if (slot == 0 || slot >= slots_in_file()) continue;  // never made: nothing to destroy
      const std::byte* e = map_ + uint64_t{slot} * kEntry;
      if (coding::get_u32(e + 8) == kDestroyed && coding::get_u64(e + 120) == XXH3_64bits(e, 120)) continue;
      if (status s = write_destroyed(slot); !s) return s;
      ++done;
    }
  if (done)
    if (status s = fs_->datasync(file_); !s) return s;
  return done;
}

result<uint64_t> keyring::forget(std::string_view stream, bool integer, const std::vector<uint32_t>& slots) {
  const std::string jpath = log_files::join(dir_, kJournalName);
  auto jf = fs_->open(jpath, file_system::open_mode::read_write);
  if (!jf) return jf.error();
  file_handle jh = jf.value();
  // The journal record first, durable: from here a crash is finished by the
  // next open. A torn record a crash left after the last whole one was
  // never acknowledged; it is cut so this one follows the last whole record.
  const uint32_t n = static_cast<uint32_t>(slots.size());
  const uint32_t len = static_cast<uint32_t>(coding::align8(32 + uint64_t{n} * 4 + stream.size()) + 8);
  std::vector<std::byte> e(len);
  coding::put_u32(e.data(), len);
  coding::put_u32(e.data() + 4, n);
  coding::put_u64(e.data() + 8, journal_seq_ + 1);
  coding::put_u64(e.data() + 16, now_ns());
  coding::put_u8(e.data() + 24, static_cast<uint8_t>(stream.size()));
  coding::put_u8(e.data() + 25, integer ? 1 : 0);
  for (uint32_t i = 0; i < n; ++i) coding::put_u32(e.data() + 32 + 4 * i, slots[i]);
  std::memcpy(e.data() + 32 + 4 * uint64_t{n}, stream.data(), stream.size());
  coding::put_u64(e.data() + len - 8, XXH3_64bits(e.data(), len - 8));
  status s;
  auto size = fs_->file_size(jh);
  if (!size) s = size.error();
  if (s && size.value() > journal_end_) s = fs_->truncate(jh, journal_end_);
  if (s) s = fs_->pwrite(jh, journal_end_, e.data(), e.size());
  if (s) s = fs_->datasync(jh);
  fs_->close(jh);
  if (!s) return s;
  journal_end_ += len;
  ++journal_seq_;
  for (uint32_t slot : slots)
    if (status w = write_destroyed(slot); !w) return w;
  if (status w = fs_->datasync(file_); !w) return w;
  return journal_seq_;
}

}  // namespace detail
}  // namespace varve
