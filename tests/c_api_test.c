/* The C API (include/varve/varve_c.h), from C11 and against the shared
 * library: every function, its error paths, and that what C reads back is
 * what C wrote. Each case runs as its own CTest test:  c_api_test CASE. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, pread/pwrite in strict C11 */

#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "varve/varve_c.h"

static int g_failures = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
      ++g_failures;                                                              \
    }                                                                            \
  } while (0)

/* Runs a call that takes &err last and checks its code; prints the message of
 * an unexpected outcome. */
#define CHECK_CODE(want, call)                                                           \
  do {                                                                                   \
    varve_errc got_ = (call);                                                            \
    if (got_ != (want) || err.code != got_) {                                            \
      fprintf(stderr, "%s:%d: %s\n  returned %s (err.code %s), want %s: %s\n", __FILE__,  \
              __LINE__, #call, varve_errc_name(got_), varve_errc_name(err.code),          \
              varve_errc_name(want), err.message);                                       \
      ++g_failures;                                                                      \
    }                                                                                    \
  } while (0)
#define CHECK_OK(call) CHECK_CODE(VARVE_OK, call)

/* ---- scratch directories ------------------------------------------------ */

static char g_root[256];

static int remove_entry(const char* path, const struct stat* sb, int flag, struct FTW* ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void make_root(void) {
  const char* tmp = getenv("TMPDIR");
  snprintf(g_root, sizeof g_root, "%s/varve_c_api_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_root)) {
    perror("mkdtemp");
    exit(2);
  }
}

static void remove_root(void) { nftw(g_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* g_root/NAME (not created: varve_log_create makes it). */
static const char* path_in_root(const char* name) {
  static char buf[4][512];
  static int next = 0;
  char* p = buf[next++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", g_root, name);
  return p;
}

static varve_log_options small_segments(void) {
  varve_log_options o;
  varve_log_options_init(&o);
  o.segment_bytes = 64 * 1024; /* the smallest: keeps files and scans small */
  return o;
}

static varve_event_data event_of(uint32_t type, const char* text) {
  varve_event_data d;
  memset(&d, 0, sizeof d);
  d.type = type;
  d.payload = text;
  d.payload_size = strlen(text);
  return d;
}

static bool payload_is(const varve_event* e, const char* text) {
  return e->payload_size == strlen(text) && memcmp(e->payload, text, e->payload_size) == 0;
}

static bool stream_is(const varve_event* e, const char* name) {
  return !e->stream_is_integer && e->stream_size == strlen(name) &&
         memcmp(e->stream, name, e->stream_size) == 0;
}

#define S(name) varve_stream_bytes((name), strlen(name))

static varve_log* create_log(const char* name, const varve_log_options* o) {
  varve_error err;
  varve_log* log = NULL;
  CHECK_OK(varve_log_create(path_in_root(name), o, &log, &err));
  if (!log) exit(1);
  return log;
}

/* ---- cases ---------------------------------------------------------------- */

static void test_names_and_version(void) {
  CHECK(strcmp(varve_errc_name(VARVE_OK), "ok") == 0);
  CHECK(strcmp(varve_errc_name(VARVE_WRONG_EXPECTED_VERSION), "wrong expected version") == 0);
  CHECK(strcmp(varve_errc_name(VARVE_CORRUPTION), "corruption") == 0);
  CHECK(strcmp(varve_errc_name(VARVE_CANCELLED), "cancelled") == 0);
  CHECK(strcmp(varve_errc_name(VARVE_ALREADY_EXISTS), "already exists") == 0);
  /* The code after the last one varve_c.h names has no name: fails when
   * varve::errc grows a code that this header does not mirror yet. */
  CHECK(strcmp(varve_errc_name(VARVE_REMOVED), "removed by retention") == 0);
  CHECK(strcmp(varve_errc_name(VARVE_STREAM_DELETED), "stream deleted") == 0);
  CHECK(strcmp(varve_errc_name((varve_errc)(VARVE_STREAM_DELETED + 1)), "unknown") == 0);
  CHECK(strcmp(varve_errc_name(VARVE_OUT_OF_MEMORY), "out of memory") == 0);
  CHECK(strcmp(varve_errc_name(VARVE_INTERNAL), "internal error") == 0);
  CHECK(strcmp(varve_errc_name((varve_errc)77), "unknown") == 0);
  CHECK(strcmp(varve_errc_name((varve_errc)-1), "unknown") == 0);
  CHECK(strcmp(varve_version(), VARVE_EXPECTED_VERSION) == 0);

  varve_log_options o;
  memset(&o, 0xff, sizeof o);
  varve_log_options_init(&o);
  CHECK(o.segment_bytes == 64ull << 20);
  CHECK(o.durability == VARVE_DURABILITY_NONE);
  CHECK(o.group_commit_interval_us == 1000);
  CHECK(o.group_commit_bytes == 1u << 20);
  CHECK(o.recovery == VARVE_RECOVERY_TORN_TAIL);
  CHECK(o.prepare_next_segment && o.verify_checksums);
  CHECK(o.master_key == NULL);
  varve_log_options_init(NULL); /* harmless */

  varve_subscription_options so;
  memset(&so, 0xff, sizeof so);
  varve_subscription_options_init(&so);
  CHECK(so.spin_ns == 20000 && so.name == NULL);
  varve_subscription_options_init(NULL);
}

static void test_create_open_close(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("a", &o);

  /* A second writer is refused while the first holds the lock; a reader is not. */
  varve_log* other = (varve_log*)&err; /* must be overwritten with NULL */
  CHECK_CODE(VARVE_LOCKED, varve_log_open(path_in_root("a"), &o, &other, &err));
  CHECK(other == NULL);
  CHECK(err.message[0] != '\0');
  varve_log* ro = NULL;
  CHECK_OK(varve_log_open_read_only(path_in_root("a"), NULL, &ro, &err));
  CHECK(ro != NULL);
  CHECK_OK(varve_log_close(ro, &err));

  /* create refuses a directory that already holds a log: open here, the
   * lock says so first; closed, the log itself. */
  CHECK_CODE(VARVE_LOCKED, varve_log_create(path_in_root("a"), &o, &other, &err));
  CHECK_OK(varve_log_close(log, &err));
  CHECK_CODE(VARVE_ALREADY_EXISTS, varve_log_create(path_in_root("a"), &o, &other, &err));
  CHECK(other == NULL && strstr(err.message, "already holds a varve log") != NULL);

  /* Reopen for writing; open_or_create both opens and creates. */
  CHECK_OK(varve_log_open(path_in_root("a"), NULL, &log, &err));
  CHECK_OK(varve_log_close(log, &err));
  CHECK_OK(varve_log_open_or_create(path_in_root("a"), &o, &log, &err));
  CHECK_OK(varve_log_close(log, &err));
  CHECK_OK(varve_log_open_or_create(path_in_root("b"), &o, &log, &err));
  CHECK_OK(varve_log_close(log, &err));

  /* Errors of opening. */
  CHECK(varve_log_open(path_in_root("nothing-here"), NULL, &log, &err) != VARVE_OK);
  CHECK(log == NULL && err.code != VARVE_OK && err.message[0] != '\0');
  o.segment_bytes = 1000; /* not a power of two */
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_create(path_in_root("c"), &o, &log, &err));
  o = small_segments();
  o.durability = (varve_durability)7;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_create(path_in_root("c"), &o, &log, &err));
  CHECK(strstr(err.message, "durability") != NULL);
  o = small_segments();
  o.recovery = (varve_recovery_mode)9;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_create(path_in_root("c"), &o, &log, &err));

  /* A message longer than the buffer is cut, ends in "...", stays terminated. */
  char deep[1200];
  int n = snprintf(deep, sizeof deep, "%s", g_root);
  while (n < 1000) n += snprintf(deep + n, sizeof deep - (size_t)n, "/%s", "a-long-directory-name");
  CHECK(varve_log_open(deep, NULL, &log, &err) != VARVE_OK);
  CHECK(strlen(err.message) == VARVE_ERROR_MESSAGE_SIZE - 1);
  CHECK(strcmp(err.message + VARVE_ERROR_MESSAGE_SIZE - 4, "...") == 0);

  /* err may be NULL: the code still comes back. */
  CHECK(varve_log_open(path_in_root("nothing-here"), NULL, &log, NULL) != VARVE_OK);
  log = create_log("d", NULL);
  CHECK(varve_log_close(log, NULL) == VARVE_OK);
}

static void test_append(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  varve_event_data ev = event_of(7, "{\"qty\":1}");
  ev.content = VARVE_CONTENT_JSON;
  varve_append_result r;

  CHECK_OK(varve_append(log, S("order-1"), varve_expect_no_stream(), &ev, &r, &err));
  CHECK(r.first_version == 1 && r.last_version == 1 && r.first_sequence == 0);
  CHECK(r.first == 64 && r.end > r.first); /* the first record follows the segment header */

  /* Optimistic concurrency: the code, the actual version, nothing written. */
  CHECK_CODE(VARVE_WRONG_EXPECTED_VERSION,
             varve_append(log, S("order-1"), varve_expect_no_stream(), &ev, &r, &err));
  CHECK(err.actual_version == 1);
  CHECK_CODE(VARVE_WRONG_EXPECTED_VERSION,
             varve_append(log, S("order-1"), varve_expect_exact(5), &ev, NULL, &err));
  CHECK(err.actual_version == 1);
  CHECK_CODE(VARVE_WRONG_EXPECTED_VERSION,
             varve_append(log, S("order-2"), varve_expect_exists(), &ev, NULL, &err));
  CHECK(err.actual_version == 0);
  CHECK(varve_append(log, S("order-1"), varve_expect_exact(3), &ev, NULL, NULL) ==
        VARVE_WRONG_EXPECTED_VERSION);
  uint64_t v = 99;
  CHECK_OK(varve_version_of(log, S("order-1"), &v, &err));
  CHECK(v == 1);
  CHECK_OK(varve_version_of(log, S("order-2"), &v, &err));
  CHECK(v == 0);

  CHECK_OK(varve_append(log, S("order-1"), varve_expect_exact(1), &ev, &r, &err));
  CHECK(r.first_version == 2 && r.last_version == 2 && r.first_sequence == 1);
  CHECK_OK(varve_append(log, S("order-1"), varve_expect_exists(), &ev, NULL, &err));
  CHECK_OK(varve_append(log, S("order-1"), varve_expect_any(), &ev, &r, &err));
  CHECK(r.last_version == 4);

  /* An atomic batch. */
  varve_event_data batch[3] = {event_of(1, "a"), event_of(2, "bb"), event_of(3, "ccc")};
  CHECK_OK(varve_append_batch(log, S("order-1"), varve_expect_exact(4), batch, 3, &r, &err));
  CHECK(r.first_version == 5 && r.last_version == 7 && r.first_sequence == 4);
  CHECK(!r.duplicate);

  /* Idempotent append: the same event id at the same expected version is the
   * original acknowledgement, marked duplicate; nothing is written. */
  varve_id128 id = {{0}};
  id.bytes[0] = 0xAB;
  id.bytes[15] = 0x01;
  varve_event_data once = event_of(8, "once");
  once.event_id = &id;
  varve_append_result first, again;
  CHECK_OK(varve_append(log, S("order-9"), varve_expect_no_stream(), &once, &first, &err));
  CHECK(!first.duplicate);
  CHECK_OK(varve_append(log, S("order-9"), varve_expect_no_stream(), &once, &again, &err));
  CHECK(again.duplicate && again.first == first.first && again.end == first.end &&
        again.first_version == 1 && again.first_sequence == first.first_sequence);
  CHECK_OK(varve_version_of(log, S("order-9"), &v, &err));
  CHECK(v == 1);
  CHECK_CODE(VARVE_WRONG_EXPECTED_VERSION,
             varve_append_batch(log, S("order-1"), varve_expect_exact(4), batch, 3, &r, &err));
  CHECK(err.actual_version == 7);
  /* A batch beyond the on-stack conversion buffer (more than 16 events). */
  varve_event_data many[40];
  for (int i = 0; i < 40; ++i) many[i] = event_of((uint32_t)i, "m");
  CHECK_OK(varve_append_batch(log, S("bulk"), varve_expect_no_stream(), many, 40, &r, &err));
  CHECK(r.first_version == 1 && r.last_version == 40);

  /* Integer stream ids are their own ids, not their bytes as a string. */
  CHECK_OK(varve_append(log, varve_stream_u64(42), varve_expect_no_stream(), &ev, &r, &err));
  CHECK_OK(varve_version_of(log, varve_stream_u64(42), &v, &err));
  CHECK(v == 1);

  /* What the C++ API refuses comes back with its code. */
  CHECK_CODE(VARVE_INVALID_ARGUMENT,
             varve_append_batch(log, S("order-1"), varve_expect_any(), batch, 0, &r, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT,
             varve_append(log, varve_stream_bytes("", 0), varve_expect_any(), &ev, &r, &err));
  static char big[70 * 1024];
  memset(big, 'x', sizeof big);
  varve_event_data huge = event_of(1, "");
  huge.payload = big;
  huge.payload_size = sizeof big;
  CHECK_CODE(VARVE_TOO_LARGE, varve_append(log, S("order-1"), varve_expect_any(), &huge, &r, &err));
  /* ... and what C can get wrong that C++'s types rule out. */
  varve_event_data bad = event_of(1, "x");
  bad.payload = NULL;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_append(log, S("s"), varve_expect_any(), &bad, &r, &err));
  bad = event_of(1, "x");
  bad.content = (varve_content_type)5;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_append(log, S("s"), varve_expect_any(), &bad, &r, &err));
  varve_expected_version weird = {(varve_expect)9, 0};
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_append(log, S("s"), weird, &ev, &r, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT,
             varve_append(log, varve_stream_bytes(NULL, 3), varve_expect_any(), &ev, &r, &err));

  /* A C++ exception inside the call (here std::length_error from a vector of
   * impossible size, thrown before any event is read) becomes a code. */
  CHECK_CODE(VARVE_OUT_OF_MEMORY, varve_append_batch(log, S("s"), varve_expect_any(), batch,
                                                     SIZE_MAX / 8, &r, &err));
  CHECK(strstr(err.message, "out of memory") != NULL);

  /* Nothing the failures above tried was written. */
  CHECK_OK(varve_version_of(log, S("order-1"), &v, &err));
  CHECK(v == 7);
  CHECK_OK(varve_version_of(log, S("s"), &v, &err));
  CHECK(v == 0);

  /* A read-only log refuses appends. */
  varve_log* ro = NULL;
  CHECK_OK(varve_log_open_read_only(path_in_root("log"), NULL, &ro, &err));
  CHECK_CODE(VARVE_READ_ONLY, varve_append(ro, S("order-9"), varve_expect_any(), &ev, &r, &err));
  CHECK_OK(varve_version_of(ro, S("order-1"), &v, &err));
  CHECK(v == 7);
  CHECK_OK(varve_log_close(ro, &err));
  CHECK_OK(varve_log_close(log, &err));
}

/* A unit of work over several streams: all or nothing, one batch. */
static void test_append_multi(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("multi", &o);
  varve_event_data placed = event_of(1, "placed");
  CHECK_OK(varve_append(log, S("order-1"), varve_expect_no_stream(), &placed, NULL, &err));
  varve_event_data paid = event_of(2, "paid");
  varve_event_data stock[2] = {event_of(3, "reserved"), event_of(4, "picked")};
  varve_stream_batch unit[3] = {
      {S("order-1"), varve_expect_exact(1), &paid, 1},
      {varve_stream_u64(77), varve_expect_no_stream(), stock, 2},
      {S("customer-9"), varve_expect_no_stream(), NULL, 0}, /* a check only */
  };
  varve_append_result acks[3], whole;
  CHECK_OK(varve_append_multi(log, unit, 3, acks, &whole, &err));
  CHECK(acks[0].first_version == 2 && acks[0].last_version == 2 && acks[0].first == whole.first);
  CHECK(acks[1].first_version == 1 && acks[1].last_version == 2 && acks[1].first == acks[0].end);
  CHECK(acks[2].first == acks[2].end && acks[2].last_version == 0 && acks[1].end == whole.end);
  CHECK(whole.first_sequence == 1 && whole.first_version == 0);
  /* The log reads it back as one batch over two streams. */
  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(log, whole.first, &rd, &err));
  varve_event e;
  bool got = false;
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && e.batch_begin && !e.batch_end && stream_is(&e, "order-1") && payload_is(&e, "paid"));
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && !e.batch_begin && !e.batch_end && e.stream_is_integer && e.version == 1);
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && e.batch_end && payload_is(&e, "picked"));
  varve_reader_free(rd);
  /* A conflict in one stream writes nothing and names it. */
  unit[0].expected = varve_expect_exact(2);
  unit[1].expected = varve_expect_exact(1);
  CHECK_CODE(VARVE_WRONG_EXPECTED_VERSION, varve_append_multi(log, unit, 3, NULL, NULL, &err));
  CHECK(err.actual_version == 2 && strstr(err.message, "streams[1]") != NULL);
  uint64_t v = 0;
  CHECK_OK(varve_version_of(log, S("order-1"), &v, &err));
  CHECK(v == 2);
  /* The same stream twice, no event at all, no batches: refused. */
  varve_stream_batch twice[2] = {{S("a"), varve_expect_any(), &paid, 1}, {S("a"), varve_expect_any(), &paid, 1}};
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_append_multi(log, twice, 2, NULL, NULL, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_append_multi(log, unit + 2, 1, NULL, NULL, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_append_multi(log, NULL, 1, NULL, NULL, &err));
  CHECK_OK(varve_log_close(log, &err));
}

static void test_read_log(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  varve_id128 id = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
  varve_id128 corr = {{0xaa}};
  varve_event_data first = event_of(11, "first");
  first.schema_version = 3;
  first.timestamp_ns = 1000;
  first.event_id = &id;
  first.correlation_id = &corr;
  varve_append_result r1, r2;
  CHECK_OK(varve_append(log, S("order-1"), varve_expect_no_stream(), &first, &r1, &err));
  varve_event_data pair[2] = {event_of(12, "second"), event_of(13, "third")};
  pair[0].timestamp_ns = 2000;
  pair[1].timestamp_ns = 3000;
  CHECK_OK(varve_append_batch(log, S("order-1"), varve_expect_exact(1), pair, 2, &r2, &err));

  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  varve_event e;
  bool got = false;
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got);
  CHECK(e.position == r1.first && e.sequence == 0 && stream_is(&e, "order-1"));
  CHECK(e.version == 1 && e.previous == VARVE_POSITION_NONE && e.type == 11);
  CHECK(e.schema_version == 3 && e.timestamp_ns == 1000 && e.content == VARVE_CONTENT_BINARY);
  CHECK(e.batch_begin && e.batch_end && payload_is(&e, "first"));
  CHECK(e.event_id && memcmp(e.event_id->bytes, id.bytes, 16) == 0);
  CHECK(e.correlation_id && e.correlation_id->bytes[0] == 0xaa && e.causation_id == NULL);
  CHECK(e.position + e.record_bytes == r1.end);
  const void* first_payload = e.payload;

  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && e.version == 2 && e.previous == r1.first && e.schema_version == 1);
  CHECK(e.batch_begin && !e.batch_end && payload_is(&e, "second") && e.event_id == NULL);
  uint64_t where = 0;
  CHECK_OK(varve_reader_where(rd, &where, &err));
  CHECK(where == e.position + e.record_bytes);
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && e.version == 3 && !e.batch_begin && e.batch_end && payload_is(&e, "third"));
  CHECK_OK(varve_reader_where(rd, &where, &err));
  CHECK(where == r2.end);

  /* The end is not an error; a later append is there on the next call. */
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(!got);
  varve_event_data later = event_of(14, "later");
  CHECK_OK(varve_append(log, S("order-2"), varve_expect_any(), &later, NULL, &err));
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && stream_is(&e, "order-2") && payload_is(&e, "later") && e.sequence == 3);

  /* Seek back to a record; a position that cannot be a record's (records
   * are 8-byte aligned) is refused by the read, one inside a record fails
   * validation. */
  CHECK_OK(varve_reader_seek(rd, r1.first, &err));
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && e.sequence == 0 && e.payload == first_payload); /* zero copy: the same bytes */
  CHECK_OK(varve_reader_seek(rd, r1.first + 4, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_next(rd, &e, &got, &err));
  CHECK(!got && strstr(err.message, "not a record position") != NULL);
  CHECK_OK(varve_reader_seek(rd, r1.first + 8, &err));
  CHECK_CODE(VARVE_CORRUPTION, varve_reader_next(rd, &e, &got, &err));
  varve_reader_free(rd);

  /* A reader opened at an append's end starts with the next event. */
  CHECK_OK(varve_reader_open(log, r2.end, &rd, &err));
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && payload_is(&e, "later"));
  varve_reader_free(rd);

  /* Watermarks and figures. */
  varve_positions p;
  CHECK_OK(varve_log_positions(log, &p, &err));
  CHECK(p.committed > r2.end && p.written == p.committed && p.durable <= p.committed);
  CHECK(p.next_sequence == 4);
  CHECK_OK(varve_flush(log, &err));
  CHECK_OK(varve_log_positions(log, &p, &err));
  CHECK(p.durable == p.committed);
  varve_stats st;
  CHECK_OK(varve_log_stats(log, &st, &err));
  CHECK(st.events == 4 && st.streams == 2 && st.segments == 1 && st.segment_bytes == 64 * 1024);
  CHECK(st.committed == p.committed && st.durable == p.durable && st.bytes_on_disk >= 64 * 1024);

  /* "As of a time": the first event at or after t. */
  uint64_t at = 0;
  CHECK_OK(varve_position_at_time(log, 1500, &at, &err));
  CHECK(at == r1.end); /* the record of "second" follows "first" */
  CHECK_OK(varve_position_at_time(log, 1, &at, &err));
  CHECK(at == r1.first);
  /* Sequences: r1 holds sequence 0 (its first event), the end is the next. */
  CHECK_OK(varve_position_of_sequence(log, 0, &at, &err));
  CHECK(at == r1.first);
  CHECK_OK(varve_position_of_sequence(log, 4, &at, &err));
  CHECK(at == p.committed);
  CHECK_CODE(VARVE_NOT_FOUND, varve_position_of_sequence(log, 5, &at, &err));
  CHECK(strstr(err.message, "sequence 5") != NULL);
  CHECK_OK(varve_log_close(log, &err));
}

/* The bulk readers: the same events as varve_reader_next (the same bytes,
 * zero copy) for batch capacities 1, 7 and 5000 (at most 1024 per call),
 * over many segments; the end and a later append; a subscription in batches;
 * the last event's extension; bad arguments. */
static void test_read_batch(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  enum { kEvents = 3000 };
  char text[64];
  for (int i = 0; i < kEvents; ++i) {
    snprintf(text, sizeof text, "event-%d-%.*s", i, i % 40, "........................................");
    varve_event_data d = event_of((uint32_t)(i % 5), text);
    d.schema_version = (uint16_t)(1 + i % 3);
    const char* streams[3] = {"order-1", "order-2", "cust-9"};
    CHECK_OK(varve_append(log, varve_stream_bytes(streams[i % 3], strlen(streams[i % 3])),
                          varve_expect_any(), &d, NULL, &err));
  }
  static varve_event one[kEvents];
  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  size_t total = 0;
  bool got = true;
  while (got && total < kEvents) {
    CHECK_OK(varve_reader_next(rd, &one[total], &got, &err));
    if (got) ++total;
  }
  CHECK(total == kEvents);
  varve_reader_free(rd);

  static varve_event batch[2048];
  const size_t capacities[3] = {1, 7, 5000};
  for (int c = 0; c < 3; ++c) {
    CHECK_OK(varve_reader_open(log, 0, &rd, &err));
    size_t seen = 0, calls = 0, count = 0;
    for (;;) {
      CHECK_OK(varve_reader_next_batch(rd, batch, capacities[c], &count, &err));
      if (count == 0) break;
      CHECK(count <= capacities[c] && count <= 1024);
      ++calls;
      for (size_t i = 0; i < count && seen + i < kEvents; ++i) {
        const varve_event* a = &one[seen + i];
        const varve_event* b = &batch[i];
        CHECK(a->position == b->position && a->sequence == b->sequence && a->type == b->type);
        CHECK(a->payload == b->payload && a->payload_size == b->payload_size);
        CHECK(a->stream == b->stream && a->stream_size == b->stream_size && a->version == b->version);
        CHECK(a->schema_version == b->schema_version && a->record_bytes == b->record_bytes);
      }
      seen += count;
      varve_event_ext ext;
      CHECK_OK(varve_reader_event_ext(rd, &ext, &err));
      CHECK(ext.stored_schema_version == batch[count - 1].schema_version);
      uint64_t where = 0;
      CHECK_OK(varve_reader_where(rd, &where, &err));
      CHECK(where == batch[count - 1].position + batch[count - 1].record_bytes);
    }
    CHECK(seen == kEvents + (size_t)c); /* and the "later" events of the rounds before */
    if (capacities[c] == 5000) CHECK(calls >= 3); /* 1024 at most per call */
    /* The end is not an error; a later append comes on the next call. */
    varve_event_data later = event_of(9, "later");
    CHECK_OK(varve_append(log, S("late"), varve_expect_any(), &later, NULL, &err));
    CHECK_OK(varve_reader_next_batch(rd, batch, capacities[c], &count, &err));
    CHECK(count == 1 && payload_is(&batch[0], "later") && batch[0].sequence == kEvents + (uint64_t)c);
    CHECK_OK(varve_reader_next_batch(rd, batch, 0, &count, &err));
    CHECK(count == 0);
    CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_next_batch(rd, NULL, 4, &count, &err));
    CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_next_batch(rd, batch, 4, NULL, &err));
    varve_reader_free(rd);
  }
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_next_batch(NULL, batch, 4, &total, &err));

  /* A subscription in batches of 64: the same events, then nothing. */
  varve_subscription* sub = NULL;
  CHECK_OK(varve_subscription_open(log, 0, NULL, NULL, &sub, &err));
  size_t seen = 0, count = 0;
  for (;;) {
    CHECK_OK(varve_subscription_next_batch(sub, batch, 64, 0, &count, &err));
    if (count == 0) break;
    CHECK(count <= 64);
    for (size_t i = 0; i < count && seen + i < kEvents; ++i)
      CHECK(batch[i].sequence == seen + i && batch[i].payload == one[seen + i].payload);
    seen += count;
    varve_event_ext ext;
    CHECK_OK(varve_subscription_event_ext(sub, &ext, &err));
    CHECK(ext.stored_schema_version == batch[count - 1].schema_version);
  }
  CHECK(seen == kEvents + 3);
  CHECK_OK(varve_subscription_next_batch(sub, batch, 64, 1000 * 1000, &count, &err));
  CHECK(count == 0);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_next_batch(sub, batch, 64, -1, &count, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_next_batch(sub, NULL, 64, 0, &count, &err));
  CHECK(varve_subscription_cancel(sub) == VARVE_OK);
  CHECK_CODE(VARVE_CANCELLED, varve_subscription_next_batch(sub, batch, 64, 0, &count, &err));
  CHECK(count == 0);
  varve_subscription_free(sub);
  CHECK_OK(varve_log_close(log, &err));
}

/* A filtered reader: only the events of one correlation id (and a type),
 * across many sealed segments, in log order; bad arguments are refused. */
/* Upcasters from a JSON file: readers opened after it hand out the current
 * version, appends newer than it fail, bad files change nothing. */
static void test_upcasters(void) {
  varve_error err;
  varve_log* log = create_log("log", NULL);
  const char* stored[3] = {"{\"qty\":2,\"x\":1}", "{\"quantity\":3}", "{\"qty\":4}"};
  const uint16_t versions[3] = {1, 2, 1};
  for (int i = 0; i < 3; ++i) {
    varve_event_data d = event_of(7, stored[i]);
    d.schema_version = versions[i];
    d.content = VARVE_CONTENT_JSON;
    CHECK_OK(varve_append(log, varve_stream_bytes("cart", 4), varve_expect_any(), &d, NULL, &err));
  }
  const char* file = path_in_root("up.json");
  FILE* f = fopen(file, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs("{\"upcasters\":[{\"type\":7,\"from\":1,\"rename\":{\"qty\":\"quantity\"},\"drop\":[\"x\"]}]}", f);
  fclose(f);
  CHECK_OK(varve_log_set_upcasters(log, file, &err));
  const char* want[3] = {"{\"quantity\":2}", "{\"quantity\":3}", "{\"quantity\":4}"};
  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  varve_stream_reader* sr = NULL;
  CHECK_OK(varve_stream_read(log, varve_stream_bytes("cart", 4), 1, VARVE_FORWARD, UINT64_MAX, &sr, &err));
  for (int i = 0; i < 3; ++i) {
    varve_event e;
    bool got = false;
    CHECK_OK(varve_reader_next(rd, &e, &got, &err));
    CHECK(got && payload_is(&e, want[i]) && e.schema_version == 2 && e.type == 7);
    varve_event_ext ext;
    CHECK_OK(varve_reader_event_ext(rd, &ext, &err));
    CHECK(ext.stored_schema_version == versions[i] && ext.metadata_size == 0);
    CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
    CHECK(got && payload_is(&e, want[i]) && e.schema_version == 2);
    CHECK_OK(varve_stream_reader_event_ext(sr, &ext, &err));
    CHECK(ext.stored_schema_version == versions[i]);
  }
  varve_reader_free(rd);
  varve_stream_reader_free(sr);
  /* In batches: an upcast payload lives in the reader's buffer, so it ends
   * its batch (checked before the next call). */
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  for (int i = 0; i < 3; ++i) {
    varve_event batch[4];
    size_t count = 0;
    CHECK_OK(varve_reader_next_batch(rd, batch, 4, &count, &err));
    CHECK(count == 1 && payload_is(&batch[0], want[i]) && batch[0].schema_version == 2);
  }
  varve_reader_free(rd);

  /* Newer than the current version: refused, nothing written. */
  varve_event_data newer = event_of(7, "{}");
  newer.schema_version = 3;
  CHECK_CODE(VARVE_INVALID_ARGUMENT,
             varve_append(log, varve_stream_bytes("cart", 4), varve_expect_any(), &newer, NULL, &err));
  CHECK(strstr(err.message, "newer than its current version 2") != NULL);

  /* A gap, a missing file, NULL handles: refused, the set kept. */
  f = fopen(file, "w");
  if (f) {
    fputs("{\"upcasters\":[{\"type\":7,\"from\":1},{\"type\":7,\"from\":3}]}", f);
    fclose(f);
  }
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_set_upcasters(log, file, &err));
  CHECK(strstr(err.message, "none from version 2") != NULL);
  CHECK_CODE(VARVE_NOT_FOUND, varve_log_set_upcasters(log, path_in_root("absent.json"), &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_set_upcasters(NULL, file, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT,
             varve_append(log, varve_stream_bytes("cart", 4), varve_expect_any(), &newer, NULL, &err));

  /* NULL removes them: the stored bytes again. */
  CHECK_OK(varve_log_set_upcasters(log, NULL, &err));
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  varve_event e;
  bool got = false;
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && payload_is(&e, stored[0]) && e.schema_version == 1);
  varve_reader_free(rd);
  CHECK_OK(varve_log_close(log, &err));
}

/* Metadata through the C API: appended per event (batch and multi-stream),
 * read back from every kind of reader, walked and looked up; bounds refused
 * with nothing written; the walker never reads past what it is given. */
static bool md_is(const varve_event_ext* x, const char* key, const char* value) {
  const void* v = NULL;
  size_t n = 0;
  return varve_metadata_find(x->metadata, x->metadata_size, key, strlen(key), &v, &n) &&
         n == strlen(value) && memcmp(v, value, n) == 0;
}

static void test_metadata(void) {
  varve_error err;
  varve_log* log = create_log("log", NULL);
  varve_event_data ev[2] = {event_of(1, "a"), event_of(1, "b")};
  varve_metadata_entry m0[2] = {{"user", 4, "ada", 3}, {"empty", 5, NULL, 0}};
  varve_metadata_entry m1[1] = {{"trace", 5, "\x01\x00\x02", 3}};
  varve_event_metadata md[2] = {{m0, 2}, {m1, 1}};
  varve_append_result r;
  CHECK_OK(varve_append_batch_with_metadata(log, S("s"), varve_expect_no_stream(), ev, md, 2, &r, &err));
  /* Multi-stream: the second batch without metadata. */
  varve_event_data one = event_of(2, "c");
  varve_stream_batch batches[2] = {{S("t"), varve_expect_no_stream(), &one, 1},
                                   {S("u"), varve_expect_no_stream(), &ev[0], 1}};
  varve_metadata_entry mt[1] = {{"k", 1, "v", 1}};
  varve_event_metadata mdt[1] = {{mt, 1}};
  const varve_event_metadata* per_batch[2] = {mdt, NULL};
  CHECK_OK(varve_append_multi_with_metadata(log, batches, per_batch, 2, NULL, NULL, &err));

  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  varve_event e;
  varve_event_ext x;
  bool got = false;
  CHECK_OK(varve_reader_event_ext(rd, &x, &err)); /* before any event: zeros */
  CHECK(x.metadata_size == 0 && x.stored_schema_version == 0);
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK_OK(varve_reader_event_ext(rd, &x, &err));
  CHECK(got && payload_is(&e, "a") && x.stored_schema_version == 1);
  CHECK(md_is(&x, "user", "ada") && md_is(&x, "empty", ""));
  CHECK(!varve_metadata_find(x.metadata, x.metadata_size, "absent", 6, NULL, NULL));
  size_t at = 0, count = 0;
  varve_metadata_entry it;
  while (varve_metadata_next(x.metadata, x.metadata_size, &at, &it)) ++count;
  CHECK(count == 2 && at == x.metadata_size);
  /* Cut short, the walker stops at the last whole entry. */
  at = 0;
  count = 0;
  while (varve_metadata_next(x.metadata, x.metadata_size - 1, &at, &it)) ++count;
  CHECK(count == 1);
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK_OK(varve_reader_event_ext(rd, &x, &err));
  CHECK(got && payload_is(&e, "b") && x.metadata_size == 3 + 5 + 3);
  {
    const void* v = NULL;
    size_t n = 0;
    CHECK(varve_metadata_find(x.metadata, x.metadata_size, "trace", 5, &v, &n) && n == 3 &&
          memcmp(v, "\x01\x00\x02", 3) == 0); /* bytes, a NUL among them */
  }
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK_OK(varve_reader_event_ext(rd, &x, &err));
  CHECK(got && payload_is(&e, "c") && md_is(&x, "k", "v"));
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK_OK(varve_reader_event_ext(rd, &x, &err));
  CHECK(got && stream_is(&e, "u") && x.metadata_size == 0);
  varve_reader_free(rd);

  varve_stream_reader* sr = NULL;
  CHECK_OK(varve_stream_read(log, S("s"), 2, VARVE_FORWARD, 1, &sr, &err));
  CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
  CHECK_OK(varve_stream_reader_event_ext(sr, &x, &err));
  CHECK(got && payload_is(&e, "b") && x.metadata_size == 11);
  varve_stream_reader_free(sr);

  varve_subscription_options so;
  varve_subscription_options_init(&so);
  varve_subscription* sub = NULL;
  CHECK_OK(varve_subscription_open(log, 0, NULL, &so, &sub, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK_OK(varve_subscription_event_ext(sub, &x, &err));
  CHECK(got && md_is(&x, "user", "ada"));
  varve_subscription_free(sub);

  /* Out of bounds: a reserved key, an empty key, a NULL value with a size. */
  varve_metadata_entry bad[3][1] = {{{"varve.x", 7, "v", 1}}, {{"", 0, "v", 1}}, {{"k", 1, NULL, 1}}};
  for (int i = 0; i < 3; ++i) {
    varve_event_metadata b = {bad[i], 1};
    CHECK_CODE(VARVE_INVALID_ARGUMENT,
               varve_append_batch_with_metadata(log, S("s"), varve_expect_any(), ev, &b, 1, NULL, &err));
  }
  varve_positions p;
  CHECK_OK(varve_log_positions(log, &p, &err));
  CHECK(p.next_sequence == 4);
  CHECK(!varve_metadata_next(NULL, 10, &at, &it));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_event_ext(NULL, &x, &err));
  CHECK_OK(varve_log_close(log, &err));
}

static void test_read_filtered(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  enum { kEvents = 3000 };
  char text[48];
  varve_id128 ids[10];
  memset(ids, 0, sizeof ids);
  for (int k = 0; k < 10; ++k) ids[k].bytes[15] = (uint8_t)(k + 1);
  for (int i = 0; i < kEvents; ++i) {
    snprintf(text, sizeof text, "event-%05d-padding-padding", i);
    varve_event_data d = event_of((uint32_t)(1 + i % 2), text);
    if (i % 7 != 0) d.correlation_id = &ids[i % 10];
    CHECK_OK(varve_append(log, varve_stream_u64((uint64_t)(i % 50)), varve_expect_any(), &d, NULL, &err));
  }
  varve_stats st;
  CHECK_OK(varve_log_stats(log, &st, &err));
  CHECK(st.segments >= 4);

  /* Correlation id 3 alone, then id 3 or 8 of type 2. */
  for (int round = 0; round < 2; ++round) {
    varve_reader* rd = NULL;
    varve_filter f;
    memset(&f, 0, sizeof f);
    const uint32_t type2 = 2;
    if (round == 1) {
      f.types = &type2;
      f.type_count = 1;
    }
    const varve_id128 wanted[2] = {ids[3], ids[8]};
    CHECK_OK(varve_reader_open_filtered(log, 0, round ? &f : NULL, wanted, round ? 2 : 1, &rd, &err));
    int expect = 0, got_n = 0;
    bool ok = true;
    for (;;) {
      /* The next index the model passes. */
      while (expect < kEvents && !(expect % 7 != 0 && (expect % 10 == 3 || (round && expect % 10 == 8)) &&
                                   (!round || 1 + expect % 2 == 2)))
        ++expect;
      varve_event e;
      bool got = false;
      CHECK_OK(varve_reader_next(rd, &e, &got, &err));
      if (!got) break;
      snprintf(text, sizeof text, "event-%05d-padding-padding", expect);
      ok = ok && expect < kEvents && payload_is(&e, text) && e.correlation_id &&
           memcmp(e.correlation_id->bytes, ids[expect % 10].bytes, 16) == 0;
      ++got_n;
      ++expect;
    }
    while (expect < kEvents && !(expect % 7 != 0 && (expect % 10 == 3 || (round && expect % 10 == 8)) &&
                                 (!round || 1 + expect % 2 == 2)))
      ++expect;
    CHECK(ok);
    CHECK(expect == kEvents); /* nothing the model passes was missed */
    CHECK(got_n > 100);
    varve_reader_free(rd);
  }

  /* No filter and no ids: every event, like varve_reader_open. */
  varve_reader* all = NULL;
  CHECK_OK(varve_reader_open_filtered(log, 0, NULL, NULL, 0, &all, &err));
  int n = 0;
  varve_event e;
  bool got = true;
  while (got) {
    CHECK_OK(varve_reader_next(all, &e, &got, &err));
    n += got;
  }
  CHECK(n == kEvents);
  varve_reader_free(all);

  varve_reader* rd = (varve_reader*)&err;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_open_filtered(log, 0, NULL, NULL, 1, &rd, &err));
  CHECK(rd == NULL && strstr(err.message, "correlation_ids is NULL") != NULL);
  varve_filter bad;
  memset(&bad, 0, sizeof bad);
  bad.type_count = 1;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_open_filtered(log, 0, &bad, NULL, 0, &rd, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_open_filtered(NULL, 0, NULL, NULL, 0, &rd, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_open_filtered(log, 0, NULL, NULL, 0, NULL, &err));
  CHECK_OK(varve_log_close(log, &err));
}

static void test_read_stream(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  char text[16];
  for (int i = 1; i <= 5; ++i) {
    snprintf(text, sizeof text, "a%d", i);
    varve_event_data d = event_of(1, text);
    CHECK_OK(varve_append(log, S("acct-a"), varve_expect_exact((uint64_t)i - 1), &d, NULL, &err));
    snprintf(text, sizeof text, "b%d", i);
    d = event_of(2, text);
    CHECK_OK(varve_append(log, varve_stream_u64(7), varve_expect_any(), &d, NULL, &err));
  }
  varve_stream_reader* sr = NULL;
  varve_event e;
  bool got;
  uint64_t v = 0;

  /* Forward from version 2, at most 3. */
  CHECK_OK(varve_stream_read(log, S("acct-a"), 2, VARVE_FORWARD, 3, &sr, &err));
  CHECK_OK(varve_stream_reader_version(sr, &v, &err));
  CHECK(v == 5);
  for (uint64_t want = 2; want <= 4; ++want) {
    CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
    snprintf(text, sizeof text, "a%d", (int)want);
    CHECK(got && e.version == want && stream_is(&e, "acct-a") && payload_is(&e, text));
  }
  CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
  CHECK(!got);
  varve_stream_reader_free(sr);

  /* Backward from the newest, an integer stream. */
  CHECK_OK(varve_stream_read(log, varve_stream_u64(7), VARVE_LATEST_VERSION, VARVE_BACKWARD,
                             UINT64_MAX, &sr, &err));
  for (uint64_t want = 5; want >= 1; --want) {
    CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
    CHECK(got && e.version == want && e.stream_is_integer && e.stream_size == 8);
    CHECK(e.stream_size == 8 && (unsigned char)e.stream[7] == 7 && e.type == 2);
  }
  CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
  CHECK(!got);
  varve_stream_reader_free(sr);

  /* A stream that does not exist reads as empty. */
  CHECK_OK(varve_stream_read(log, S("nobody"), 1, VARVE_FORWARD, UINT64_MAX, &sr, &err));
  CHECK_OK(varve_stream_reader_version(sr, &v, &err));
  CHECK(v == 0);
  CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
  CHECK(!got);
  varve_stream_reader_free(sr);

  CHECK_CODE(VARVE_INVALID_ARGUMENT,
             varve_stream_read(log, S("acct-a"), 1, (varve_direction)4, 1, &sr, &err));
  CHECK(sr == NULL);
  CHECK_OK(varve_log_close(log, &err));
}

static void test_subscribe(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  varve_event_data d = event_of(1, "o1");
  CHECK_OK(varve_append(log, S("order-1"), varve_expect_any(), &d, NULL, &err));
  d = event_of(2, "c1");
  CHECK_OK(varve_append(log, S("cust-1"), varve_expect_any(), &d, NULL, &err));
  d = event_of(3, "o2");
  varve_append_result r;
  CHECK_OK(varve_append(log, S("order-2"), varve_expect_any(), &d, &r, &err));

  /* History through a category filter, then live. */
  const char* prefixes[] = {"order-"};
  varve_filter f;
  memset(&f, 0, sizeof f);
  f.stream_prefixes = prefixes;
  f.stream_prefix_count = 1;
  varve_subscription* sub = NULL;
  CHECK_OK(varve_subscription_open(log, 0, &f, NULL, &sub, &err));
  varve_event e;
  bool got;
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(got && payload_is(&e, "o1"));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(got && payload_is(&e, "o2"));
  uint64_t where = 0, lag_events = 9, lag_bytes = 9;
  CHECK_OK(varve_subscription_where(sub, &where, &err));
  CHECK(where == r.end);
  CHECK_OK(varve_subscription_lag(sub, &lag_events, &lag_bytes, &err));
  CHECK(lag_events == 0 && lag_bytes == 0);
  /* Caught up: a wait that times out is not an error. */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CHECK_OK(varve_subscription_next(sub, &e, 20 * 1000 * 1000, &got, &err));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK(!got);
  CHECK((t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec) >= 15 * 1000 * 1000);
  d = event_of(4, "c2");
  CHECK_OK(varve_append(log, S("cust-2"), varve_expect_any(), &d, NULL, &err));
  d = event_of(5, "o3");
  CHECK_OK(varve_append(log, S("order-3"), varve_expect_any(), &d, NULL, &err));
  CHECK_OK(varve_subscription_lag(sub, &lag_events, &lag_bytes, &err));
  CHECK(lag_events == 2 && lag_bytes > 0);
  CHECK_OK(varve_subscription_next(sub, &e, 1000 * 1000 * 1000, &got, &err));
  CHECK(got && payload_is(&e, "o3"));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_ack(sub, e.position, &err)); /* unnamed */
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_commit(sub, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_next(sub, &e, -1, &got, &err));
  CHECK(varve_subscription_cancel(sub) == VARVE_OK);
  CHECK_CODE(VARVE_CANCELLED, varve_subscription_next(sub, &e, 0, &got, &err));
  varve_subscription_free(sub);

  /* By type and by exact stream (an integer one). */
  d = event_of(6, "n7");
  CHECK_OK(varve_append(log, varve_stream_u64(7), varve_expect_any(), &d, NULL, &err));
  uint32_t types[] = {2, 6};
  varve_stream_id streams[] = {varve_stream_u64(7)};
  memset(&f, 0, sizeof f);
  f.types = types;
  f.type_count = 2;
  f.streams = streams;
  f.stream_count = 1;
  CHECK_OK(varve_subscription_open(log, 0, &f, NULL, &sub, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(got && payload_is(&e, "n7") && e.stream_is_integer);
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(!got);
  varve_subscription_free(sub);

  /* Live only: VARVE_POSITION_END. */
  CHECK_OK(varve_subscription_open(log, VARVE_POSITION_END, NULL, NULL, &sub, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(!got);
  d = event_of(7, "new");
  CHECK_OK(varve_append(log, S("x"), varve_expect_any(), &d, NULL, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(got && payload_is(&e, "new"));
  varve_subscription_free(sub);

  /* Named: ack + commit persist the position; a new one resumes there. */
  varve_subscription_options so;
  varve_subscription_options_init(&so);
  so.name = "billing";
  so.spin_ns = 0;
  CHECK_OK(varve_subscription_open(log, 0, NULL, &so, &sub, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(got && payload_is(&e, "c1"));
  CHECK_OK(varve_subscription_ack(sub, e.position + e.record_bytes, &err));
  CHECK_OK(varve_subscription_commit(sub, &err));
  varve_subscription_free(sub);
  CHECK_OK(varve_subscription_open(log, 0, NULL, &so, &sub, &err)); /* `from` ignored */
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(got && payload_is(&e, "o2"));
  /* An ack past the committed end. */
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_ack(sub, 1u << 30, &err));
  varve_subscription_free(sub);

  /* Errors of opening. */
  so.name = ".hidden";
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_open(log, 0, NULL, &so, &sub, &err));
  CHECK(sub == NULL);
  so.name = NULL;
  so.spin_ns = -5;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_open(log, 0, NULL, &so, &sub, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT,
             varve_subscription_open(log, 1ull << 40, NULL, NULL, &sub, &err));
  memset(&f, 0, sizeof f);
  f.type_count = 3; /* with types NULL */
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_open(log, 0, &f, NULL, &sub, &err));
  const char* null_prefix[] = {NULL};
  memset(&f, 0, sizeof f);
  f.stream_prefixes = null_prefix;
  f.stream_prefix_count = 1;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_subscription_open(log, 0, &f, NULL, &sub, &err));
  CHECK_OK(varve_log_close(log, &err));
}

static void test_durability(void) {
  varve_error err;
  varve_log_options o = small_segments();
  o.durability = VARVE_DURABILITY_GROUP;
  o.group_commit_interval_us = 200;
  varve_log* log = create_log("group", &o);
  varve_event_data d = event_of(1, "g");
  varve_append_result r;
  CHECK_OK(varve_append(log, S("s"), varve_expect_any(), &d, &r, &err));
  CHECK_OK(varve_wait_durable(log, r.end, &err));
  varve_positions p;
  CHECK_OK(varve_log_positions(log, &p, &err));
  CHECK(p.durable >= r.end);
  CHECK_OK(varve_log_close(log, &err));

  o.durability = VARVE_DURABILITY_SYNC;
  log = create_log("sync", &o);
  CHECK_OK(varve_append(log, S("s"), varve_expect_any(), &d, &r, &err));
  CHECK_OK(varve_log_positions(log, &p, &err));
  CHECK(p.durable >= r.end); /* sync: durable when append returns */
  CHECK_OK(varve_log_close(log, &err));

  /* Survives a reopen, recovery included. */
  CHECK_OK(varve_log_open(path_in_root("sync"), NULL, &log, &err));
  uint64_t v = 0;
  CHECK_OK(varve_version_of(log, S("s"), &v, &err));
  CHECK(v == 1);
  CHECK_OK(varve_log_close(log, &err));
}

static void test_retain(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("retain", &o);
  static char pad[401];
  memset(pad, 'r', 400);
  varve_event_data d = event_of(1, pad);
  varve_append_result r;
  varve_positions p;
  do {
    CHECK_OK(varve_append(log, S("s"), varve_expect_any(), &d, &r, &err));
    CHECK_OK(varve_log_positions(log, &p, &err));
  } while (p.committed < 5u * 65536u);
  CHECK_OK(varve_log_close(log, &err));
  CHECK_OK(varve_log_open(path_in_root("retain"), &o, &log, &err));
  varve_retention_policy pol = {0, 0, 3u * 65536u + 64u};
  varve_retention_result res;
  CHECK_OK(varve_retain(log, &pol, 1, &res, &err)); /* dry run */
  CHECK(res.segments_removed == 3 && res.start_position == 3u * 65536u + 64u);
  uint64_t start = 1, seq = 1;
  CHECK_OK(varve_log_start(log, &start, &seq, &err));
  CHECK(start == 0 && seq == 0);
  CHECK_OK(varve_retain(log, &pol, 0, &res, &err));
  CHECK(res.segments_removed == 3 && res.first_segment == 3 && res.events_removed == res.first_sequence);
  CHECK_OK(varve_log_start(log, &start, &seq, &err));
  CHECK(start == res.start_position && seq == res.first_sequence);
  /* From 0: the start. Below it: VARVE_REMOVED, saying where the log starts. */
  varve_reader* rd = NULL;
  varve_event e;
  bool got = false;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && e.position == start && e.sequence == seq);
  varve_reader_free(rd);
  CHECK_OK(varve_reader_open(log, 64, &rd, &err));
  CHECK(varve_reader_next(rd, &e, &got, &err) == VARVE_REMOVED);
  CHECK(strstr(err.message, "removed by retention") != NULL);
  varve_reader_free(rd);
  CHECK(varve_retain(log, NULL, 0, NULL, &err) == VARVE_INVALID_ARGUMENT);
  CHECK_OK(varve_log_close(log, &err));
}

static void test_archive(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("archive", &o);
  static char pad[401];
  memset(pad, 'a', 400);
  varve_event_data d = event_of(1, pad);
  varve_append_result r;
  varve_positions p;
  uint64_t appended = 0;
  do {
    CHECK_OK(varve_append(log, S("s"), varve_expect_any(), &d, &r, &err));
    CHECK_OK(varve_log_positions(log, &p, &err));
    ++appended;
  } while (p.committed < 4u * 65536u);
  CHECK_OK(varve_log_close(log, &err));
  CHECK_OK(varve_log_open(path_in_root("archive"), &o, &log, &err));
  varve_archive_result res;
  CHECK_OK(varve_archive(log, path_in_root("archive-cold"), 2u * 65536u + 64u, 0, 1, &res, &err)); /* dry run */
  CHECK(res.segments_archived == 2 && res.archived_bytes == 0 && res.archive_end == 2);
  CHECK_OK(varve_archive(log, path_in_root("archive-cold"), 2u * 65536u + 64u, 0, 0, &res, &err));
  CHECK(res.segments_archived == 2 && res.raw_bytes == 2u * 65536u && res.archived_bytes > 0 &&
        res.archived_bytes < res.raw_bytes);
  CHECK(varve_archive(log, path_in_root("archive-other"), VARVE_POSITION_NONE, 0, 0, NULL, &err) ==
        VARVE_INVALID_ARGUMENT);
  CHECK(varve_archive(log, NULL, VARVE_POSITION_NONE, 0, 0, NULL, &err) == VARVE_INVALID_ARGUMENT);
  CHECK_OK(varve_log_close(log, &err));
  /* Every event reads back, the archived ones first. */
  CHECK_OK(varve_log_open(path_in_root("archive"), &o, &log, &err));
  varve_reader* rd = NULL;
  varve_event e;
  bool got = false;
  uint64_t n = 0;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  for (;;) {
    CHECK_OK(varve_reader_next(rd, &e, &got, &err));
    if (!got) break;
    CHECK(e.sequence == n && payload_is(&e, pad));
    ++n;
  }
  CHECK(n == appended);
  varve_reader_free(rd);
  CHECK_OK(varve_log_close(log, &err));
}

/* Flips one byte of `marker`'s first occurrence in DIR/00000000000000000000.seg. */
static void corrupt_segment(const char* dir, const char* marker) {
  char path[600];
  snprintf(path, sizeof path, "%s/00000000000000000000.seg", dir);
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  if (fd < 0) return;
  static unsigned char seg[64 * 1024];
  ssize_t n = pread(fd, seg, sizeof seg, 0);
  CHECK(n == (ssize_t)sizeof seg);
  size_t len = strlen(marker);
  long at = -1;
  for (size_t i = 0; n > 0 && i + len <= (size_t)n; ++i)
    if (memcmp(seg + i, marker, len) == 0) {
      at = (long)i;
      break;
    }
  CHECK(at >= 0);
  if (at >= 0) {
    unsigned char b = seg[at] ^ 0x20;
    CHECK(pwrite(fd, &b, 1, at) == 1); /* the log's shared mapping sees it at once */
  }
  close(fd);
}

static void test_corruption(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  varve_event_data d = event_of(1, "intact-payload");
  CHECK_OK(varve_append(log, S("order-1"), varve_expect_any(), &d, NULL, &err));
  d = event_of(1, "CORRUPT-ME-PAYLOAD");
  CHECK_OK(varve_append(log, S("order-1"), varve_expect_any(), &d, NULL, &err));
  CHECK_OK(varve_flush(log, &err));
  corrupt_segment(path_in_root("log"), "CORRUPT-ME-PAYLOAD");

  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  varve_event e;
  bool got;
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && payload_is(&e, "intact-payload"));
  CHECK_CODE(VARVE_CORRUPTION, varve_reader_next(rd, &e, &got, &err));
  CHECK(!got && strstr(err.message, "00000000000000000000.seg offset") != NULL);
  /* The cursor stays on the bad record: never skipped silently. */
  CHECK_CODE(VARVE_CORRUPTION, varve_reader_next(rd, &e, &got, &err));
  varve_reader_free(rd);
  /* In batches: the events before it, then its error, on every call. */
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  varve_event batch[8];
  size_t count = 9;
  CHECK_OK(varve_reader_next_batch(rd, batch, 8, &count, &err));
  CHECK(count == 1 && payload_is(&batch[0], "intact-payload"));
  CHECK_CODE(VARVE_CORRUPTION, varve_reader_next_batch(rd, batch, 8, &count, &err));
  CHECK(count == 0 && strstr(err.message, "00000000000000000000.seg offset") != NULL);
  CHECK_CODE(VARVE_CORRUPTION, varve_reader_next_batch(rd, batch, 8, &count, &err));
  varve_reader_free(rd);

  /* A stream read walks down from the stream's newest record, the bad one. */
  varve_stream_reader* sr = (varve_stream_reader*)&err;
  CHECK_CODE(VARVE_CORRUPTION,
             varve_stream_read(log, S("order-1"), 1, VARVE_FORWARD, UINT64_MAX, &sr, &err));
  CHECK(sr == NULL && strstr(err.message, "checksum mismatch") != NULL);

  varve_subscription* sub = NULL;
  CHECK_OK(varve_subscription_open(log, 0, NULL, NULL, &sub, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK_CODE(VARVE_CORRUPTION, varve_subscription_next(sub, &e, 0, &got, &err));
  varve_subscription_free(sub);
  CHECK_OK(varve_subscription_open(log, 0, NULL, NULL, &sub, &err));
  CHECK_OK(varve_subscription_next_batch(sub, batch, 8, 0, &count, &err));
  CHECK(count == 1 && payload_is(&batch[0], "intact-payload"));
  CHECK_CODE(VARVE_CORRUPTION, varve_subscription_next_batch(sub, batch, 8, 0, &count, &err));
  CHECK(count == 0);
  varve_subscription_free(sub);
  CHECK_OK(varve_log_close(log, &err));

  /* The damaged event was acknowledged: reopening for writing refuses, in
   * the default mode and in strict, and changes nothing... */
  CHECK_CODE(VARVE_CORRUPTION, varve_log_open(path_in_root("log"), &o, &log, &err));
  CHECK(log == NULL);
  o.recovery = VARVE_RECOVERY_STRICT;
  CHECK_CODE(VARVE_CORRUPTION, varve_log_open(path_in_root("log"), &o, &log, &err));
  /* ... until an explicit repair ends the log just before the damage. */
  o.recovery = VARVE_RECOVERY_POINT_IN_TIME;
  CHECK_OK(varve_log_open(path_in_root("log"), &o, &log, &err));
  uint64_t v = 0;
  CHECK_OK(varve_version_of(log, S("order-1"), &v, &err));
  CHECK(v == 1);
  CHECK_OK(varve_log_close(log, &err));
}

/* Whether `marker` is anywhere in DIR/00000000000000000000.seg (a 64 KiB segment). */
static bool segment_contains(const char* dir, const char* marker) {
  char path[600];
  snprintf(path, sizeof path, "%s/00000000000000000000.seg", dir);
  FILE* f = fopen(path, "rb");
  CHECK(f != NULL);
  if (!f) return false;
  static unsigned char seg[64 * 1024];
  const size_t n = fread(seg, 1, sizeof seg, f);
  fclose(f);
  const size_t len = strlen(marker);
  for (size_t i = 0; i + len <= n; ++i)
    if (memcmp(seg + i, marker, len) == 0) return true;
  return false;
}

static void write_file(const char* path, const void* bytes, size_t size) {
  FILE* f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(bytes, 1, size, f) == size);
  CHECK(fclose(f) == 0);
}

/* Every event of `log` from the start, each as "STREAM/VERSION" and then
 * "-" when forgotten with no payload, "+" when its payload reads back as
 * "STREAM-secret-VERSION", "?" for anything else; "!" when one is not
 * encrypted or its type did not survive. */
static const char* events_of(varve_log* log) {
  static char out[1024];
  out[0] = '\0';
  varve_error err;
  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  if (!rd) return out;
  varve_event e;
  bool got = false;
  size_t n = 0;
  for (;;) {
    CHECK_OK(varve_reader_next(rd, &e, &got, &err));
    if (!got) break;
    char want[300];
    snprintf(want, sizeof want, "%.*s-secret-%llu", (int)e.stream_size, e.stream,
             (unsigned long long)e.version);
    const char* mark = !e.encrypted || e.type != 5         ? "!"
                       : e.forgotten && e.payload_size == 0 ? "-"
                       : !e.forgotten && payload_is(&e, want) ? "+"
                                                              : "?";
    n += (size_t)snprintf(out + n, sizeof out - n, "%s%.*s/%llu%s", n ? " " : "", (int)e.stream_size,
                          e.stream, (unsigned long long)e.version, mark);
    if (n >= sizeof out) break;
  }
  varve_reader_free(rd);
  return out;
}

#define CHECK_EVENTS(log, want)                                                      \
  do {                                                                               \
    const char* got_ = events_of(log);                                               \
    if (strcmp(got_, (want)) != 0) {                                                 \
      fprintf(stderr, "%s:%d: events\n  are  %s\n  want %s\n", __FILE__, __LINE__, got_, \
              (want));                                                               \
      ++g_failures;                                                                  \
    }                                                                                \
  } while (0)

static void append_secrets(varve_log* log, const char* stream, uint64_t from, uint64_t to) {
  varve_error err;
  for (uint64_t v = from; v <= to; ++v) {
    char text[64];
    snprintf(text, sizeof text, "%s-secret-%llu", stream, (unsigned long long)v);
    varve_event_data d = event_of(5, text);
    CHECK_OK(varve_append(log, S(stream), varve_expect_exact(v - 1), &d, NULL, &err));
  }
}

/* Crypto-shredding: a log given a master key seals payloads on disk and
 * reads them back; varve_forget leaves a stream's events forgotten, with no
 * payload, in every read path and in later opens; a wrong or missing key is
 * refused; key files load. */
static void test_crypto(void) {
  varve_error err;
  uint8_t key[VARVE_MASTER_KEY_SIZE], other[VARVE_MASTER_KEY_SIZE];
  CHECK_OK(varve_master_key_generate(key, &err));
  CHECK_OK(varve_master_key_generate(other, &err));
  CHECK(memcmp(key, other, sizeof key) != 0);

  varve_log_options o = small_segments();
  o.master_key = key;
  varve_log* log = create_log("log", &o);
  bool enc = false;
  CHECK_OK(varve_log_encrypted(log, &enc, &err));
  CHECK(enc);
  append_secrets(log, "alice", 1, 3);
  append_secrets(log, "bob", 1, 2);
  CHECK_OK(varve_flush(log, &err));
  CHECK(!segment_contains(path_in_root("log"), "-secret-"));
  CHECK(segment_contains(path_in_root("log"), "alice")); /* stream ids are never sealed */
  CHECK_EVENTS(log, "alice/1+ alice/2+ alice/3+ bob/1+ bob/2+");

  varve_forget_result f;
  memset(&f, 0xff, sizeof f);
  CHECK_OK(varve_forget(log, S("alice"), &f, &err));
  CHECK(f.keys_destroyed == 1 && f.events_forgotten == 3 && f.plain_events == 0 &&
        f.forget_sequence == 1);
  CHECK_EVENTS(log, "alice/1- alice/2- alice/3- bob/1+ bob/2+");

  /* A stream read and a subscription see it too. */
  varve_stream_reader* sr = NULL;
  varve_event e;
  bool got = false;
  uint64_t n = 0;
  CHECK_OK(varve_stream_read(log, S("alice"), 1, VARVE_FORWARD, UINT64_MAX, &sr, &err));
  for (;;) {
    CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
    if (!got) break;
    CHECK(e.forgotten && e.encrypted && e.payload_size == 0 && e.version == ++n);
  }
  CHECK(n == 3);
  varve_stream_reader_free(sr);
  varve_subscription* sub = NULL;
  CHECK_OK(varve_subscription_open(log, 0, NULL, NULL, &sub, &err));
  CHECK_OK(varve_subscription_next(sub, &e, 0, &got, &err));
  CHECK(got && stream_is(&e, "alice") && e.forgotten && e.payload_size == 0);
  varve_subscription_free(sub);

  /* A forgotten stream takes new events under a new key. */
  append_secrets(log, "alice", 4, 4);
  CHECK_EVENTS(log, "alice/1- alice/2- alice/3- bob/1+ bob/2+ alice/4+");
  CHECK_CODE(VARVE_NOT_FOUND, varve_forget(log, S("nobody"), &f, &err));
  CHECK(strstr(err.message, "nobody") != NULL);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_forget(log, varve_stream_bytes(NULL, 2), NULL, &err));
  CHECK_OK(varve_forget(log, S("bob"), NULL, &err));
  CHECK_EVENTS(log, "alice/1- alice/2- alice/3- bob/1- bob/2- alice/4+");

  /* A read-only open with the key reads what the writer forgot, and cannot forget. */
  varve_log* ro = NULL;
  CHECK_OK(varve_log_open_read_only(path_in_root("log"), &o, &ro, &err));
  CHECK_EVENTS(ro, "alice/1- alice/2- alice/3- bob/1- bob/2- alice/4+");
  CHECK_CODE(VARVE_READ_ONLY, varve_forget(ro, S("alice"), &f, &err));
  CHECK_OK(varve_log_close(ro, &err));
  CHECK_OK(varve_log_close(log, &err));

  /* The wrong key opens nothing; no key, no writer; read-only without it,
   * every encrypted payload is refused (the bytes, not the key, are there). */
  varve_log_options wrong = small_segments();
  wrong.master_key = other;
  log = (varve_log*)&err;
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_open(path_in_root("log"), &wrong, &log, &err));
  CHECK(log == NULL);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_open_read_only(path_in_root("log"), &wrong, &ro, &err));
  CHECK(ro == NULL);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_open(path_in_root("log"), NULL, &log, &err));
  CHECK(strstr(err.message, "master key") != NULL);
  CHECK_OK(varve_log_open_read_only(path_in_root("log"), NULL, &ro, &err));
  enc = false;
  CHECK_OK(varve_log_encrypted(ro, &enc, &err));
  CHECK(enc);
  varve_reader* rd = NULL;
  CHECK_OK(varve_reader_open(ro, 0, &rd, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_reader_next(rd, &e, &got, &err));
  CHECK(!got && strstr(err.message, "master key") != NULL);
  varve_reader_free(rd);
  CHECK_OK(varve_log_close(ro, &err));

  /* Key files: 64 hex digits and a newline, or 32 raw bytes. */
  char hex[2 * VARVE_MASTER_KEY_SIZE + 2];
  for (size_t i = 0; i < VARVE_MASTER_KEY_SIZE; ++i) snprintf(hex + 2 * i, 3, "%02x", key[i]);
  strcat(hex, "\n");
  write_file(path_in_root("key.hex"), hex, strlen(hex));
  write_file(path_in_root("key.raw"), key, sizeof key);
  write_file(path_in_root("key.bad"), "not a key\n", 10);
  uint8_t loaded[VARVE_MASTER_KEY_SIZE];
  memset(loaded, 0, sizeof loaded);
  CHECK_OK(varve_master_key_load(path_in_root("key.hex"), loaded, &err));
  CHECK(memcmp(loaded, key, sizeof key) == 0);
  memset(loaded, 0, sizeof loaded);
  CHECK_OK(varve_master_key_load(path_in_root("key.raw"), loaded, &err));
  CHECK(memcmp(loaded, key, sizeof key) == 0);
  memcpy(loaded, other, sizeof other);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_master_key_load(path_in_root("key.bad"), loaded, &err));
  CHECK(strstr(err.message, "key.bad") != NULL && memcmp(loaded, other, sizeof other) == 0);
  CHECK_CODE(VARVE_NOT_FOUND, varve_master_key_load(path_in_root("key.none"), loaded, &err));

  /* The loaded key opens the log; the forgets stayed. */
  CHECK_OK(varve_master_key_load(path_in_root("key.hex"), loaded, &err));
  o.master_key = loaded;
  CHECK_OK(varve_log_open(path_in_root("log"), &o, &log, &err));
  CHECK_EVENTS(log, "alice/1- alice/2- alice/3- bob/1- bob/2- alice/4+");
  CHECK_OK(varve_log_close(log, &err));

  /* A log without a key stores payloads in clear and has nothing to forget. */
  varve_log* plain = create_log("plain", NULL);
  varve_event_data d = event_of(5, "plain-text");
  CHECK_OK(varve_append(plain, S("carol"), varve_expect_any(), &d, NULL, &err));
  CHECK_OK(varve_log_encrypted(plain, &enc, &err));
  CHECK(!enc);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_forget(plain, S("carol"), &f, &err));
  CHECK_OK(varve_reader_open(plain, 0, &rd, &err));
  CHECK_OK(varve_reader_next(rd, &e, &got, &err));
  CHECK(got && !e.encrypted && !e.forgotten && payload_is(&e, "plain-text"));
  varve_reader_free(rd);
  CHECK_OK(varve_log_close(plain, &err));
}

/* The versions `log` hands out for `stream` from version 1 forward, as
 * "1 2 3"; "deleted" when the read is VARVE_STREAM_DELETED. */
static const char* stream_versions(varve_log* log, const char* stream) {
  static char out[4096];
  out[0] = '\0';
  varve_error err;
  varve_stream_reader* sr = NULL;
  const varve_errc c = varve_stream_read(log, S(stream), 1, VARVE_FORWARD, UINT64_MAX, &sr, &err);
  if (c == VARVE_STREAM_DELETED) {
    CHECK(sr == NULL && strstr(err.message, "deleted") != NULL);
    return "deleted";
  }
  CHECK_OK(c);
  if (!sr) return out;
  varve_event e;
  bool got = false;
  size_t n = 0;
  for (;;) {
    CHECK_OK(varve_stream_reader_next(sr, &e, &got, &err));
    if (!got || n >= sizeof out - 32) break;
    n += (size_t)snprintf(out + n, sizeof out - n, "%s%llu", n ? " " : "", (unsigned long long)e.version);
  }
  varve_stream_reader_free(sr);
  return out;
}

/* How many events the log reader hands out from the start, and how many of
 * them belong to `stream`. */
static uint64_t log_events(varve_log* log, const char* stream, uint64_t* of_stream) {
  varve_error err;
  varve_reader* rd = NULL;
  uint64_t n = 0;
  *of_stream = 0;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  if (!rd) return 0;
  varve_event e;
  bool got = false;
  for (;;) {
    CHECK_OK(varve_reader_next(rd, &e, &got, &err));
    if (!got) break;
    ++n;
    if (stream_is(&e, stream)) ++*of_stream;
  }
  varve_reader_free(rd);
  return n;
}

static bool metadata_is(const varve_stream_metadata* m, bool deleted, uint64_t truncate_before,
                        uint64_t max_count, uint64_t max_age_ns) {
  return m->deleted == deleted && m->truncate_before == truncate_before && m->max_count == max_count &&
         m->max_age_ns == max_age_ns;
}

/* Stream lifecycle: a deleted stream's reads and appends are
 * VARVE_STREAM_DELETED and its events leave the log reader; a truncated
 * stream reads from its floor; limits read back; a read-only log sees the
 * changes and cannot make any; scavenge gives back the space of what is
 * hidden in sealed segments, a dry run first. */
static void test_lifecycle(void) {
  varve_error err;
  varve_log_options o = small_segments();
  varve_log* log = create_log("log", &o);
  /* "gone" gets large events, "kept" small ones, turn about: about six
   * 64 KiB segments. */
  static char pad[801];
  memset(pad, 'g', 800);
  varve_event_data big = event_of(1, pad);
  varve_event_data small = event_of(1, "kept");
  for (uint64_t i = 0; i < 400; ++i) {
    CHECK_OK(varve_append(log, S("gone"), varve_expect_exact(i), &big, NULL, &err));
    CHECK_OK(varve_append(log, S("kept"), varve_expect_exact(i), &small, NULL, &err));
  }
  varve_stream_metadata m;
  memset(&m, 0xff, sizeof m);
  CHECK_OK(varve_stream_metadata_of(log, S("kept"), &m, &err));
  CHECK(metadata_is(&m, false, 0, 0, 0)); /* no metadata: all zero */

  /* Delete: reads and appends refused, the log reader skips its events. */
  memset(&m, 0, sizeof m);
  CHECK_OK(varve_delete_stream(log, S("gone"), &m, &err));
  CHECK(metadata_is(&m, true, 0, 0, 0));
  CHECK(strcmp(stream_versions(log, "gone"), "deleted") == 0);
  CHECK_CODE(VARVE_STREAM_DELETED, varve_append(log, S("gone"), varve_expect_any(), &big, NULL, &err));
  CHECK(strstr(err.message, "gone") != NULL);
  uint64_t of_stream = 0;
  CHECK(log_events(log, "kept", &of_stream) == 400 && of_stream == 400);
  CHECK_OK(varve_delete_stream(log, S("gone"), NULL, &err)); /* deleted already: nothing changes */
  CHECK_CODE(VARVE_STREAM_DELETED, varve_truncate_stream(log, S("gone"), 2, &m, &err));
  CHECK_CODE(VARVE_STREAM_DELETED, varve_set_stream_limits(log, S("gone"), 1, 0, &m, &err));
  CHECK_CODE(VARVE_NOT_FOUND, varve_delete_stream(log, S("nobody"), &m, &err));
  CHECK(strstr(err.message, "nobody") != NULL);
  CHECK_CODE(VARVE_NOT_FOUND, varve_truncate_stream(log, S("nobody"), 2, &m, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_delete_stream(log, varve_stream_bytes(NULL, 2), NULL, &err));

  /* Truncate: the stream reads from the floor; it only moves forward. */
  CHECK_OK(varve_truncate_stream(log, S("kept"), 391, &m, &err));
  CHECK(metadata_is(&m, false, 391, 0, 0));
  CHECK(strcmp(stream_versions(log, "kept"), "391 392 393 394 395 396 397 398 399 400") == 0);
  CHECK(log_events(log, "kept", &of_stream) == 10 && of_stream == 10);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_truncate_stream(log, S("kept"), 10, &m, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_truncate_stream(log, S("kept"), 402, &m, &err));

  /* Limits replace each other and read back; a stream need not exist yet. */
  CHECK_OK(varve_set_stream_limits(log, S("kept"), 3, 0, &m, &err));
  CHECK(metadata_is(&m, false, 391, 3, 0));
  memset(&m, 0, sizeof m);
  CHECK_OK(varve_stream_metadata_of(log, S("kept"), &m, &err));
  CHECK(metadata_is(&m, false, 391, 3, 0));
  CHECK(strcmp(stream_versions(log, "kept"), "398 399 400") == 0);
  CHECK_OK(varve_set_stream_limits(log, varve_stream_u64(7), 0, 3600000000000ull, NULL, &err));
  CHECK_OK(varve_stream_metadata_of(log, varve_stream_u64(7), &m, &err));
  CHECK(metadata_is(&m, false, 0, 0, 3600000000000ull));
  CHECK_OK(varve_stream_metadata_of(log, S("gone"), &m, &err));
  CHECK(m.deleted);

  /* A read-only open sees every change and can make none. */
  varve_log* ro = NULL;
  CHECK_OK(varve_log_open_read_only(path_in_root("log"), &o, &ro, &err));
  CHECK_OK(varve_stream_metadata_of(ro, S("kept"), &m, &err));
  CHECK(metadata_is(&m, false, 391, 3, 0));
  CHECK(strcmp(stream_versions(ro, "gone"), "deleted") == 0);
  CHECK(strcmp(stream_versions(ro, "kept"), "398 399 400") == 0);
  CHECK_CODE(VARVE_READ_ONLY, varve_delete_stream(ro, S("kept"), &m, &err));
  CHECK_CODE(VARVE_READ_ONLY, varve_truncate_stream(ro, S("kept"), 399, &m, &err));
  CHECK_CODE(VARVE_READ_ONLY, varve_set_stream_limits(ro, S("kept"), 1, 0, &m, &err));
  CHECK_CODE(VARVE_READ_ONLY, varve_scavenge(ro, true, NULL, &err));
  CHECK_OK(varve_log_close(ro, &err));

  /* Scavenge takes sealed segments only: reopening seals the full ones. */
  CHECK_OK(varve_log_close(log, &err));
  CHECK_OK(varve_log_open(path_in_root("log"), &o, &log, &err));
  CHECK(strcmp(stream_versions(log, "gone"), "deleted") == 0); /* the changes stayed */
  varve_scavenge_result dry, real;
  memset(&dry, 0xff, sizeof dry);
  CHECK_OK(varve_scavenge(log, true, &dry, &err));
  CHECK(dry.segments_examined >= 4 && dry.segments_rewritten > 0 && dry.events_removed > 300 &&
        dry.bytes_freed == 0);
  memset(&real, 0xff, sizeof real);
  CHECK_OK(varve_scavenge(log, false, &real, &err));
  CHECK(real.segments_examined == dry.segments_examined &&
        real.segments_rewritten == dry.segments_rewritten && real.events_removed == dry.events_removed &&
        real.bytes_freed > 0);
  /* What was visible stays visible, and only that. */
  CHECK(strcmp(stream_versions(log, "kept"), "398 399 400") == 0);
  CHECK(strcmp(stream_versions(log, "gone"), "deleted") == 0);
  CHECK_OK(varve_stream_metadata_of(log, S("kept"), &m, &err));
  CHECK(m.truncate_before >= 391 && m.truncate_before <= 398 && m.max_count == 3 && !m.deleted);
  CHECK(log_events(log, "kept", &of_stream) == 401 - m.truncate_before && of_stream == 401 - m.truncate_before);
  /* The removed events are gone for good: the next open finds none to remove. */
  CHECK_OK(varve_log_close(log, &err));
  CHECK_OK(varve_log_open(path_in_root("log"), &o, &log, &err));
  CHECK_OK(varve_scavenge(log, true, &dry, &err));
  CHECK(dry.segments_examined == real.segments_examined && dry.segments_rewritten == 0 &&
        dry.events_removed == 0);
  CHECK(strcmp(stream_versions(log, "kept"), "398 399 400") == 0);
  CHECK(strcmp(stream_versions(log, "gone"), "deleted") == 0);
  CHECK_OK(varve_log_close(log, &err));
}

static void test_close_with_open_children(void) {
  varve_error err;
  varve_log* log = create_log("log", NULL);
  varve_reader* rd = NULL;
  varve_stream_reader* sr = NULL;
  varve_subscription* sub = NULL;
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  CHECK_OK(varve_stream_read(log, S("s"), 1, VARVE_FORWARD, 1, &sr, &err));
  CHECK_OK(varve_subscription_open(log, 0, NULL, NULL, &sub, &err));
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_close(log, &err));
  CHECK(strstr(err.message, "3 reader(s)") != NULL);
  varve_reader_free(rd);
  varve_stream_reader_free(sr);
  CHECK_CODE(VARVE_INVALID_ARGUMENT, varve_log_close(log, &err)); /* still open: the log too */
  varve_event_data d = event_of(1, "still usable");
  CHECK_OK(varve_append(log, S("s"), varve_expect_any(), &d, NULL, &err));
  varve_subscription_free(sub);
  CHECK_OK(varve_log_close(log, &err));
}

static void test_null_arguments(void) {
  varve_error err;
  varve_log* log = create_log("log", NULL);
  varve_log* none = NULL;
  varve_event_data d = event_of(1, "x");
  varve_append_result r;
  varve_positions p;
  varve_stats st;
  uint64_t u;
  bool got;
  varve_event e;
  varve_reader* rd = NULL;
  varve_stream_reader* sr = NULL;
  varve_subscription* sub = NULL;
  const varve_errc inval = VARVE_INVALID_ARGUMENT;

  CHECK_CODE(inval, varve_log_create(NULL, NULL, &none, &err));
  CHECK(strstr(err.message, "dir is NULL") != NULL);
  CHECK_CODE(inval, varve_log_create(path_in_root("n"), NULL, NULL, &err));
  CHECK_CODE(inval, varve_log_open(NULL, NULL, &none, &err));
  CHECK_CODE(inval, varve_log_open_or_create(NULL, NULL, &none, &err));
  CHECK_CODE(inval, varve_log_open_read_only(NULL, NULL, &none, &err));
  CHECK_CODE(inval, varve_log_close(NULL, &err));
  CHECK_CODE(inval, varve_append(NULL, S("s"), varve_expect_any(), &d, &r, &err));
  CHECK_CODE(inval, varve_append(log, S("s"), varve_expect_any(), NULL, &r, &err));
  CHECK_CODE(inval, varve_append_batch(NULL, S("s"), varve_expect_any(), &d, 1, &r, &err));
  CHECK_CODE(inval, varve_append_batch(log, S("s"), varve_expect_any(), NULL, 1, &r, &err));
  CHECK_CODE(inval, varve_wait_durable(NULL, 0, &err));
  CHECK_CODE(inval, varve_flush(NULL, &err));
  CHECK_CODE(inval, varve_log_positions(NULL, &p, &err));
  CHECK_CODE(inval, varve_log_positions(log, NULL, &err));
  CHECK_CODE(inval, varve_log_stats(NULL, &st, &err));
  CHECK_CODE(inval, varve_log_stats(log, NULL, &err));
  CHECK_CODE(inval, varve_version_of(NULL, S("s"), &u, &err));
  CHECK_CODE(inval, varve_version_of(log, S("s"), NULL, &err));
  CHECK_CODE(inval, varve_position_at_time(NULL, 0, &u, &err));
  CHECK_CODE(inval, varve_position_at_time(log, 0, NULL, &err));
  CHECK_CODE(inval, varve_reader_open(NULL, 0, &rd, &err));
  CHECK_CODE(inval, varve_reader_open(log, 0, NULL, &err));
  CHECK_CODE(inval, varve_reader_next(NULL, &e, &got, &err));
  CHECK_CODE(inval, varve_reader_where(NULL, &u, &err));
  CHECK_CODE(inval, varve_reader_seek(NULL, 0, &err));
  CHECK_CODE(inval, varve_stream_read(NULL, S("s"), 1, VARVE_FORWARD, 1, &sr, &err));
  CHECK_CODE(inval, varve_stream_read(log, S("s"), 1, VARVE_FORWARD, 1, NULL, &err));
  CHECK_CODE(inval, varve_stream_reader_next(NULL, &e, &got, &err));
  CHECK_CODE(inval, varve_stream_reader_version(NULL, &u, &err));
  CHECK_CODE(inval, varve_subscription_open(NULL, 0, NULL, NULL, &sub, &err));
  CHECK_CODE(inval, varve_subscription_open(log, 0, NULL, NULL, NULL, &err));
  CHECK_CODE(inval, varve_subscription_next(NULL, &e, 0, &got, &err));
  CHECK_CODE(inval, varve_subscription_where(NULL, &u, &err));
  CHECK_CODE(inval, varve_subscription_lag(NULL, &u, &u, &err));
  CHECK(varve_subscription_cancel(NULL) == inval);
  CHECK_CODE(inval, varve_subscription_ack(NULL, 0, &err));
  CHECK_CODE(inval, varve_subscription_commit(NULL, &err));
  uint8_t key[VARVE_MASTER_KEY_SIZE];
  bool flag;
  CHECK_CODE(inval, varve_master_key_generate(NULL, &err));
  CHECK_CODE(inval, varve_master_key_load(NULL, key, &err));
  CHECK_CODE(inval, varve_master_key_load(path_in_root("k"), NULL, &err));
  CHECK_CODE(inval, varve_forget(NULL, S("s"), NULL, &err));
  CHECK_CODE(inval, varve_log_encrypted(NULL, &flag, &err));
  CHECK_CODE(inval, varve_log_encrypted(log, NULL, &err));
  varve_stream_metadata sm;
  varve_scavenge_result sc;
  CHECK_CODE(inval, varve_delete_stream(NULL, S("s"), &sm, &err));
  CHECK_CODE(inval, varve_truncate_stream(NULL, S("s"), 1, &sm, &err));
  CHECK_CODE(inval, varve_set_stream_limits(NULL, S("s"), 1, 0, &sm, &err));
  CHECK_CODE(inval, varve_stream_metadata_of(NULL, S("s"), &sm, &err));
  CHECK_CODE(inval, varve_stream_metadata_of(log, S("s"), NULL, &err));
  CHECK_CODE(inval, varve_scavenge(NULL, false, &sc, &err));

  /* NULL out-parameters of live handles. */
  CHECK_OK(varve_reader_open(log, 0, &rd, &err));
  CHECK_CODE(inval, varve_reader_next(rd, NULL, &got, &err));
  CHECK_CODE(inval, varve_reader_next(rd, &e, NULL, &err));
  CHECK_CODE(inval, varve_reader_where(rd, NULL, &err));
  CHECK_OK(varve_stream_read(log, S("s"), 1, VARVE_FORWARD, 1, &sr, &err));
  CHECK_CODE(inval, varve_stream_reader_next(sr, NULL, &got, &err));
  CHECK_CODE(inval, varve_stream_reader_next(sr, &e, NULL, &err));
  CHECK_CODE(inval, varve_stream_reader_version(sr, NULL, &err));
  CHECK_OK(varve_subscription_open(log, 0, NULL, NULL, &sub, &err));
  CHECK_CODE(inval, varve_subscription_next(sub, NULL, 0, &got, &err));
  CHECK_CODE(inval, varve_subscription_next(sub, &e, 0, NULL, &err));
  CHECK_CODE(inval, varve_subscription_where(sub, NULL, &err));
  CHECK_CODE(inval, varve_subscription_lag(sub, NULL, &u, &err));
  CHECK_CODE(inval, varve_subscription_lag(sub, &u, NULL, &err));

  /* The free functions take NULL like free(). */
  varve_reader_free(NULL);
  varve_stream_reader_free(NULL);
  varve_subscription_free(NULL);
  varve_reader_free(rd);
  varve_stream_reader_free(sr);
  varve_subscription_free(sub);
  CHECK_OK(varve_log_close(log, &err));
}

/* ---- main ------------------------------------------------------------------ */

struct test_case {
  const char* name;
  void (*run)(void);
};

static const struct test_case g_cases[] = {
    {"names_and_version", test_names_and_version},
    {"create_open_close", test_create_open_close},
    {"append", test_append},
    {"append_multi", test_append_multi},
    {"read_log", test_read_log},
    {"read_batch", test_read_batch},
    {"read_filtered", test_read_filtered},
    {"upcasters", test_upcasters},
    {"metadata", test_metadata},
    {"read_stream", test_read_stream},
    {"subscribe", test_subscribe},
    {"durability", test_durability},
    {"corruption", test_corruption},
    {"retain", test_retain},
    {"archive", test_archive},
    {"crypto", test_crypto},
    {"lifecycle", test_lifecycle},
    {"close_with_open_children", test_close_with_open_children},
    {"null_arguments", test_null_arguments},
};

int main(int argc, char** argv) {
  const size_t n = sizeof g_cases / sizeof g_cases[0];
  if (argc != 2) {
    fprintf(stderr, "usage: %s all|CASE\ncases:", argv[0]);
    for (size_t i = 0; i < n; ++i) fprintf(stderr, " %s", g_cases[i].name);
    fprintf(stderr, "\n");
    return 2;
  }
  int ran = 0;
  for (size_t i = 0; i < n; ++i) {
    if (strcmp(argv[1], "all") != 0 && strcmp(argv[1], g_cases[i].name) != 0) continue;
    make_root();
    g_cases[i].run();
    remove_root();
    ++ran;
  }
  if (!ran) {
    fprintf(stderr, "no case named %s\n", argv[1]);
    return 2;
  }
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("ok (%d case(s))\n", ran);
  return 0;
}
