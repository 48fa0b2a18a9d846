/* The C API of varve (C11): a log, cursors over it, stream reads and
 * subscriptions, behind opaque handles. A thin layer over the C++ API in
 * varve/log.h, varve/reader.h, varve/stream_reader.h and varve/subscription.h,
 * whose comments hold the full contracts; this file says what differs.
 *
 * Errors. Every function that can fail returns a varve_errc (VARVE_OK = 0) and
 * takes a last argument `varve_error* err`, which may be NULL. When it is not
 * NULL it is written on every call: on success code = VARVE_OK and an empty
 * message, on failure the code, the message (naming file and offset where
 * there is one) and, for VARVE_WRONG_EXPECTED_VERSION, the stream's actual
 * version. A NULL handle or a NULL required pointer is VARVE_INVALID_ARGUMENT.
 * No C++ exception crosses this API: one thrown inside becomes
 * VARVE_OUT_OF_MEMORY (allocation) or VARVE_INTERNAL (anything else, a bug).
 *
 * Handles. varve_log, varve_reader, varve_stream_reader and varve_subscription
 * are opaque; each is freed by its own function. Readers, stream readers and
 * subscriptions belong to the log they were opened on and must be freed before
 * it is closed (varve_log_close refuses, with VARVE_INVALID_ARGUMENT, while any
 * is open).
 *
 * Event memory. A varve_event's pointers (stream, payload, ids) point into the
 * log's read-only mapping: zero copy, valid until the log is closed, never to
 * be written through. Two exceptions, both for the payload only: an upcast
 * event's (varve_log_set_upcasters) and a decrypted one's (a log with a
 * master key) live in the reader's own buffer, until that reader's next call
 * or its free.
 *
 * Threads. A log has one writer thread at a time: varve_append*,
 * varve_flush, varve_forget, varve_delete_stream, varve_truncate_stream,
 * varve_set_stream_limits, varve_scavenge, varve_log_close, varve_version_of,
 * varve_log_stats and varve_stream_read are called from one thread at a
 * time. The position getters, varve_wait_durable, varve_reader_open and
 * varve_subscription_open may be called from any thread at any time. A
 * reader, stream reader or subscription is used by one thread at a time (any
 * thread), except varve_subscription_cancel and varve_subscription_lag, which
 * any thread may call at any time.
 *
 * Structs are plain data of this release; in 0.x they may grow, so rebuild
 * against the headers of the library you run with. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "varve/export.h"

#ifdef __cplusplus
#define VARVE_C_NOEXCEPT noexcept
extern "C" {
#else
#define VARVE_C_NOEXCEPT
#endif

/* ---- errors ------------------------------------------------------------ */

/* The same codes, with the same values, as varve::errc (varve/status.h), plus
 * two for C++ exceptions caught at this boundary. */
typedef enum varve_errc {
  VARVE_OK = 0,
  VARVE_WRONG_EXPECTED_VERSION = 1, /* optimistic concurrency check failed; nothing written */
  VARVE_CORRUPTION = 2,             /* bytes on disk failed validation */
  VARVE_IO_ERROR = 3,
  VARVE_NO_SPACE = 4,
  VARVE_NOT_FOUND = 5,
  VARVE_INVALID_ARGUMENT = 6,
  VARVE_NOT_A_LOG = 7,
  VARVE_NEWER_FORMAT = 8,
  VARVE_LOCKED = 9,                 /* another writer holds the log */
  VARVE_READ_ONLY = 10,             /* opened read-only, or writes refused after a failed sync */
  VARVE_TOO_LARGE = 11,             /* an event or batch cannot fit in one segment */
  VARVE_CANCELLED = 12,
  VARVE_ALREADY_EXISTS = 13,        /* create() where a log already is */
  VARVE_REMOVED = 14,               /* a position or version retention removed */
  VARVE_STREAM_DELETED = 15,        /* the stream was deleted (tombstoned) */
  VARVE_OUT_OF_MEMORY = 100,        /* std::bad_alloc (or a length no allocation can hold) */
  VARVE_INTERNAL = 101              /* any other C++ exception: a bug in varve */
} varve_errc;

#define VARVE_ERROR_MESSAGE_SIZE 512

typedef struct varve_error {
  varve_errc code;
  /* VARVE_WRONG_EXPECTED_VERSION: the stream's version (0 = no stream); else 0. */
  uint64_t actual_version;
  /* NUL-terminated; cut (ending in "...") when longer than the buffer. */
  char message[VARVE_ERROR_MESSAGE_SIZE];
} varve_error;

/* "ok", "wrong expected version", ... (varve::errc_name's text): a static
 * string; "unknown" for values that are no code. */
VARVE_API const char* varve_errc_name(varve_errc code) VARVE_C_NOEXCEPT;
/* The release of the library linked at run time, e.g. "0.1.0" (static string). */
VARVE_API const char* varve_version(void) VARVE_C_NOEXCEPT;

/* ---- values ------------------------------------------------------------ */

/* "No position" (an event without a previous one in its stream) and, for
 * varve_subscription_open, "the committed end when the subscription opens". */
#define VARVE_POSITION_NONE UINT64_MAX
#define VARVE_POSITION_END UINT64_MAX
/* For varve_stream_read backward: start at the stream's newest event. */
#define VARVE_LATEST_VERSION UINT64_MAX

/* A stream (aggregate) id: 1 to 255 bytes, or an integer id (stored as 8
 * big-endian bytes and flagged as a number). `bytes` need only live for the
 * duration of the call. */
typedef struct varve_stream_id {
  const char* bytes; /* used when is_integer is false; need not be NUL-terminated */
  size_t size;
  bool is_integer;
  uint64_t integer; /* used when is_integer is true */
} varve_stream_id;

static inline varve_stream_id varve_stream_bytes(const char* bytes, size_t size) {
  varve_stream_id s = {bytes, size, false, 0};
  return s;
}
static inline varve_stream_id varve_stream_u64(uint64_t id) {
  varve_stream_id s = {NULL, 0, true, id};
  return s;
}

typedef enum varve_expect {
  VARVE_EXPECT_ANY = 0,
  VARVE_EXPECT_NO_STREAM = 1,
  VARVE_EXPECT_STREAM_EXISTS = 2,
  VARVE_EXPECT_EXACT = 3 /* the stream is at exactly `version` (0 = does not exist) */
} varve_expect;

typedef struct varve_expected_version {
  varve_expect kind;
  uint64_t version; /* VARVE_EXPECT_EXACT only */
} varve_expected_version;

static inline varve_expected_version varve_expect_any(void) {
  varve_expected_version e = {VARVE_EXPECT_ANY, 0};
  return e;
}
static inline varve_expected_version varve_expect_no_stream(void) {
  varve_expected_version e = {VARVE_EXPECT_NO_STREAM, 0};
  return e;
}
static inline varve_expected_version varve_expect_exists(void) {
  varve_expected_version e = {VARVE_EXPECT_STREAM_EXISTS, 0};
  return e;
}
static inline varve_expected_version varve_expect_exact(uint64_t version) {
  varve_expected_version e = {VARVE_EXPECT_EXACT, version};
  return e;
}

typedef struct varve_id128 {
  uint8_t bytes[16];
} varve_id128;

typedef enum varve_content_type {
  VARVE_CONTENT_BINARY = 0,
  VARVE_CONTENT_JSON = 1 /* tools print the payload as JSON */
} varve_content_type;

/* One event to append. Pointers need only live for the duration of the call
 * (the bytes are copied into the log). Zero-initialize, then fill: a zero
 * schema_version means 1, a zero timestamp_ns the log's clock. */
typedef struct varve_event_data {
  uint32_t type;
  uint16_t schema_version;
  varve_content_type content;
  const void* payload;
  size_t payload_size;
  uint64_t timestamp_ns;
  const varve_id128* event_id; /* optional (NULL = absent), as are the two below */
  const varve_id128* correlation_id;
  const varve_id128* causation_id;
} varve_event_data;

/* Metadata (docs/FORMAT.md 4.1a): a small key/value map per event. Keys are 1
 * to 255 bytes, distinct, not starting with "varve."; values 0 to 65535 bytes;
 * at most 64 entries and 4096 encoded bytes (3 per entry plus keys and
 * values) per event. Bytes are opaque to the library. */
typedef struct varve_metadata_entry {
  const char* key;
  size_t key_size;
  const void* value;
  size_t value_size;
} varve_metadata_entry;

/* One event's metadata, for the *_with_metadata appends. */
typedef struct varve_event_metadata {
  const varve_metadata_entry* entries;
  size_t count;
} varve_event_metadata;

/* One event read from the log: pointers into the log's mapping, valid until
 * the log is closed. */
typedef struct varve_event {
  uint64_t position; /* where the record starts */
  uint64_t sequence; /* dense global event number, from 0 */
  const char* stream; /* raw id bytes (8 big-endian bytes for an integer id); not NUL-terminated */
  size_t stream_size;
  bool stream_is_integer;
  uint64_t version;  /* 1-based version within the stream */
  uint64_t previous; /* the stream's previous record, or VARVE_POSITION_NONE */
  uint32_t type;
  uint16_t schema_version;
  varve_content_type content;
  uint64_t timestamp_ns;
  bool batch_begin; /* first event of an atomic append */
  bool batch_end;   /* last event of an atomic append */
  const varve_id128* event_id; /* NULL when absent */
  const varve_id128* correlation_id;
  const varve_id128* causation_id;
  const void* payload;
  size_t payload_size;
  /* The record's size on disk, padding included: position + record_bytes is
   * where a read resumes after this event. */
  uint32_t record_bytes;
  /* Crypto-shredding (varve_forget): the payload is sealed with its stream's
   * data key on disk (handed out decrypted); forgotten: that key was
   * destroyed, so payload_size is 0 and only the payload is gone (type,
   * stream, version, ids, metadata remain). */
  bool encrypted;
  bool forgotten;
} varve_event;

/* What an append acknowledged. varve_wait_durable(end) returns once it
 * survives a power loss. */
typedef struct varve_append_result {
  uint64_t first;          /* position of the first event */
  uint64_t end;            /* one past the last event's record */
  uint64_t first_sequence;
  uint64_t first_version;
  uint64_t last_version;
  /* Idempotent append: every event (by event_id) was already at the place
   * the append named; nothing was written and the fields above describe the
   * events already there (event_log::append in varve/log.h). */
  bool duplicate;
} varve_append_result;

/* written <= committed; durable <= committed; next_sequence = events in the log. */
typedef struct varve_positions {
  uint64_t written;
  uint64_t committed;
  uint64_t durable;
  uint64_t next_sequence;
} varve_positions;

typedef struct varve_stats {
  uint64_t segments;
  uint64_t segment_bytes;
  uint64_t events;
  uint64_t streams;
  uint64_t written;
  uint64_t committed;
  uint64_t durable;
  uint64_t bytes_on_disk;
} varve_stats;

/* ---- opening and closing a log ------------------------------------------- */

typedef struct varve_log varve_log;

typedef enum varve_durability {
  VARVE_DURABILITY_NONE = 0,  /* page cache: survives a process crash, not a power loss */
  VARVE_DURABILITY_GROUP = 1, /* a flusher thread makes committed data durable in batches */
  VARVE_DURABILITY_SYNC = 2   /* each append returns once durable */
} varve_durability;

/* varve::recovery_mode (varve/options.h has the full contract). */
typedef enum varve_recovery_mode {
  /* The default: past the log's guard a torn tail is cut (the bytes kept in
   * DIR/lost+found/ first); at or below it damage is VARVE_CORRUPTION and
   * nothing changes. */
  VARVE_RECOVERY_TORN_TAIL = 0,
  VARVE_RECOVERY_STRICT = 1,        /* refuse any damage, a torn tail included */
  /* Explicit repairs, after reading what recovery refused: the log ends just
   * before the first damage / a damaged range becomes a hole and the records
   * after it stay. What is taken out is kept in DIR/lost+found/. */
  VARVE_RECOVERY_POINT_IN_TIME = 2,
  VARVE_RECOVERY_SKIP_DAMAGED = 3
} varve_recovery_mode;

/* varve::log_options without the C++-only hooks (file system, clock, observer). */
typedef struct varve_log_options {
  uint64_t segment_bytes; /* a power of two, 64 KiB .. 1 GiB; fixed at creation */
  varve_durability durability;
  uint64_t group_commit_interval_us;
  uint64_t group_commit_bytes;
  varve_recovery_mode recovery;
  bool prepare_next_segment;
  bool verify_checksums;
  /* Crypto-shredding (varve::log_options::master_key, varve/crypto.h): NULL
   * (the default) or VARVE_MASTER_KEY_SIZE bytes, copied by the open call.
   * With a key every payload appended is sealed with its stream's data key.
   * A log that has keys refuses a writer without its key and any open with
   * another key (VARVE_INVALID_ARGUMENT); opened read-only without it, every
   * encrypted event reads as VARVE_INVALID_ARGUMENT. */
  const uint8_t* master_key;
} varve_log_options;

/* Fills `options` with the defaults (those of varve::log_options). NULL: nothing. */
VARVE_API void varve_log_options_init(varve_log_options* options) VARVE_C_NOEXCEPT;

/* Creates an empty log in `dir` / opens an existing one for writing (running
 * recovery) / either / opens one read-only (no writer lock, no recovery; it
 * follows a writer in this or another process; appends fail with
 * VARVE_READ_ONLY). `options` may be NULL (defaults). On success *out is a new
 * handle owned by the caller (free it with varve_log_close); on failure *out
 * is set to NULL. Any thread. */
VARVE_API varve_errc varve_log_create(const char* dir, const varve_log_options* options,
                                      varve_log** out, varve_error* err) VARVE_C_NOEXCEPT;
VARVE_API varve_errc varve_log_open(const char* dir, const varve_log_options* options,
                                    varve_log** out, varve_error* err) VARVE_C_NOEXCEPT;
VARVE_API varve_errc varve_log_open_or_create(const char* dir, const varve_log_options* options,
                                              varve_log** out, varve_error* err) VARVE_C_NOEXCEPT;
VARVE_API varve_errc varve_log_open_read_only(const char* dir, const varve_log_options* options,
                                              varve_log** out, varve_error* err) VARVE_C_NOEXCEPT;

/* Syncs per the durability mode, stops the log's threads, releases the writer
 * lock and frees `log`, whose event pointers become invalid. The handle is
 * freed even when the final sync fails (that error is returned). With readers,
 * stream readers or subscriptions of this log still open it returns
 * VARVE_INVALID_ARGUMENT and leaves the log open (as for a NULL log). Writer
 * thread. */
VARVE_API varve_errc varve_log_close(varve_log* log, varve_error* err) VARVE_C_NOEXCEPT;

/* Gives the log the upcasters of a declarative JSON file (docs/DESIGN.md
 * "Upcasters"; type names resolve through DIR/types): readers, stream
 * readers and subscriptions opened after the call hand events out upcast to
 * their type's current schema version (payloads then live until the
 * reader's next call), and appends newer than a type's current version fail
 * with VARVE_INVALID_ARGUMENT. `path` NULL removes them. A malformed file or
 * a chain with a gap is VARVE_INVALID_ARGUMENT naming the entry, a missing
 * one VARVE_NOT_FOUND; the log's upcasters are then unchanged. Writer thread
 * (any thread of a read-only log), not concurrently with an append. */
VARVE_API varve_errc varve_log_set_upcasters(varve_log* log, const char* path,
                                             varve_error* err) VARVE_C_NOEXCEPT;

/* ---- writing ------------------------------------------------------------- */

/* Appends one event to `stream` if its version satisfies `expected`. On a
 * mismatch: VARVE_WRONG_EXPECTED_VERSION with err->actual_version set, and
 * nothing written. `result` may be NULL. Writer thread. */
VARVE_API varve_errc varve_append(varve_log* log, varve_stream_id stream,
                                  varve_expected_version expected, const varve_event_data* event,
                                  varve_append_result* result, varve_error* err) VARVE_C_NOEXCEPT;

/* Appends `count` events (1 or more) to `stream` atomically: all become
 * visible together and survive recovery together, or none does. The batch
 * must fit in one segment (else VARVE_TOO_LARGE). Writer thread. */
VARVE_API varve_errc varve_append_batch(varve_log* log, varve_stream_id stream,
                                        varve_expected_version expected,
                                        const varve_event_data* events, size_t count,
                                        varve_append_result* result,
                                        varve_error* err) VARVE_C_NOEXCEPT;

/* As varve_append_batch, event i carrying metadata[i] (metadata may be NULL:
 * no event has any). Entries out of bounds: VARVE_INVALID_ARGUMENT. An
 * idempotent retry (event ids) also compares the metadata. Writer thread. */
VARVE_API varve_errc varve_append_batch_with_metadata(varve_log* log, varve_stream_id stream,
                                                      varve_expected_version expected,
                                                      const varve_event_data* events,
                                                      const varve_event_metadata* metadata,
                                                      size_t count, varve_append_result* result,
                                                      varve_error* err) VARVE_C_NOEXCEPT;

/* One stream's part of varve_append_multi: its expectation and its events
 * (count 0: a version check only, writing nothing for that stream). */
typedef struct varve_stream_batch {
  varve_stream_id stream;
  varve_expected_version expected;
  const varve_event_data* events;
  size_t count;
} varve_stream_batch;

/* A unit of work over several streams, all or nothing: every stream's
 * expectation is checked first, then all the events are written as one batch
 * (visible together, kept or lost together by recovery in every durability
 * mode), in call order. On a conflict: VARVE_WRONG_EXPECTED_VERSION naming the
 * stream in err->message, err->actual_version its version, nothing written.
 * A stream may appear once (else VARVE_INVALID_ARGUMENT); at least one event
 * in all; the unit must fit in one segment (else VARVE_TOO_LARGE).
 * `per_stream` (NULL, or `count` entries) gets each stream's acknowledgement
 * (for a check-only stream first == end and both versions its current one);
 * `result` (may be NULL) the unit's: first, end and first_sequence; its
 * versions are 0. Writer thread. */
VARVE_API varve_errc varve_append_multi(varve_log* log, const varve_stream_batch* batches,
                                        size_t count, varve_append_result* per_stream,
                                        varve_append_result* result,
                                        varve_error* err) VARVE_C_NOEXCEPT;

/* As varve_append_multi, the events of batches[i] carrying metadata[i][k]
 * (metadata may be NULL, and so may metadata[i]: no metadata there).
 * Writer thread. */
VARVE_API varve_errc varve_append_multi_with_metadata(varve_log* log,
                                                      const varve_stream_batch* batches,
                                                      const varve_event_metadata* const* metadata,
                                                      size_t count, varve_append_result* per_stream,
                                                      varve_append_result* result,
                                                      varve_error* err) VARVE_C_NOEXCEPT;

/* Blocks until everything before `position` is durable (flushing it itself in
 * durability none and sync). Fails if a sync failed: the log then refuses
 * writes (VARVE_READ_ONLY) until reopened. Any thread. */
VARVE_API varve_errc varve_wait_durable(varve_log* log, uint64_t position,
                                        varve_error* err) VARVE_C_NOEXCEPT;
/* Makes everything committed so far durable. Writer thread. */
VARVE_API varve_errc varve_flush(varve_log* log, varve_error* err) VARVE_C_NOEXCEPT;

/* ---- looking at a log -------------------------------------------------- */

/* The log's watermarks, read without locks. Any thread. */
VARVE_API varve_errc varve_log_positions(const varve_log* log, varve_positions* out,
                                         varve_error* err) VARVE_C_NOEXCEPT;
/* Point-in-time figures (varve stat). Writer thread (a read-only log: one thread at a time). */
VARVE_API varve_errc varve_log_stats(varve_log* log, varve_stats* out,
                                     varve_error* err) VARVE_C_NOEXCEPT;
/* Where the log starts (retention): its first record's position (0 while
 * nothing was ever removed) and the sequence of the event there. Writer thread
 * (a read-only log: one thread at a time). */
VARVE_API varve_errc varve_log_start(const varve_log* log, uint64_t* start_position, uint64_t* first_sequence,
                                     varve_error* err) VARVE_C_NOEXCEPT;

/* Retention (event_log::retain): whole sealed segments leave the head of the
 * log; each limit that is non-zero (before: not VARVE_POSITION_NONE) condemns
 * segments. Reads below the new start then fail with VARVE_REMOVED. */
typedef struct varve_retention_policy {
  uint64_t max_age_ns; /* segments whose newest event is older; 0: no limit */
  uint64_t max_bytes;  /* the oldest segments until the files take at most this; 0: no limit */
  uint64_t before;     /* segments wholly before this position; VARVE_POSITION_NONE: no limit */
} varve_retention_policy;
typedef struct varve_retention_result {
  uint64_t segments_removed;
  uint64_t bytes_removed;
  uint64_t events_removed;
  uint64_t first_segment;
  uint64_t start_position;
  uint64_t first_sequence;
} varve_retention_result;
/* Writer thread; dry_run != 0 changes nothing. `out` may be NULL. */
VARVE_API varve_errc varve_retain(varve_log* log, const varve_retention_policy* policy, int dry_run,
                                  varve_retention_result* out, varve_error* err) VARVE_C_NOEXCEPT;

/* Archive tier (event_log::archive): whole sealed segments move into the
 * directory `dir` (created if missing; a log has one) as compressed,
 * checksummed files; every read keeps reaching them. before: archive the
 * sealed segments wholly before this position (VARVE_POSITION_NONE: all);
 * level: zstd's, 1..19 (0: 3). */
typedef struct varve_archive_result {
  uint64_t segments_archived;
  uint64_t raw_bytes;
  uint64_t archived_bytes;
  uint64_t archive_end; /* segments from the start up to this one live in the archive */
} varve_archive_result;
/* Writer thread; dry_run != 0 changes nothing. `out` may be NULL. */
VARVE_API varve_errc varve_archive(varve_log* log, const char* dir, uint64_t before, int level, int dry_run,
                                   varve_archive_result* out, varve_error* err) VARVE_C_NOEXCEPT;

/* The stream's current version (0: it does not exist). Writer thread (a
 * read-only log: one thread at a time). */
VARVE_API varve_errc varve_version_of(varve_log* log, varve_stream_id stream, uint64_t* version,
                                      varve_error* err) VARVE_C_NOEXCEPT;
/* The position of the first event whose timestamp is at or after `t_ns` (see
 * event_log::position_at_time); the committed end when none is. Writer thread. */
VARVE_API varve_errc varve_position_at_time(varve_log* log, uint64_t t_ns, uint64_t* position,
                                            varve_error* err) VARVE_C_NOEXCEPT;
/* The position of the event with sequence number `sequence`; the committed
 * end for the next sequence; VARVE_NOT_FOUND past it (see
 * event_log::position_of). Any thread. */
VARVE_API varve_errc varve_position_of_sequence(varve_log* log, uint64_t sequence,
                                               uint64_t* position, varve_error* err) VARVE_C_NOEXCEPT;

/* ---- crypto-shredding (varve/crypto.h) ---------------------------------- */

/* The application's master key: whoever holds it and the log directory reads
 * every stream not yet forgotten. The log never stores it. */
#define VARVE_MASTER_KEY_SIZE 32

/* A fresh master key from libsodium's CSPRNG. Any thread. */
VARVE_API varve_errc varve_master_key_generate(uint8_t out[VARVE_MASTER_KEY_SIZE],
                                               varve_error* err) VARVE_C_NOEXCEPT;
/* Reads a key file: 64 hexadecimal digits (a trailing newline allowed), as
 * `varve keygen` writes, or 32 raw bytes. A missing file is VARVE_NOT_FOUND,
 * anything else VARVE_INVALID_ARGUMENT naming the file; `out` is then left
 * as it was. Any thread. */
VARVE_API varve_errc varve_master_key_load(const char* path, uint8_t out[VARVE_MASTER_KEY_SIZE],
                                           varve_error* err) VARVE_C_NOEXCEPT;

/* What varve_forget did (varve::forget_result). */
typedef struct varve_forget_result {
  uint64_t keys_destroyed;   /* data keys of the stream, destroyed */
  uint64_t events_forgotten; /* its encrypted events, now unreadable */
  /* Its events appended before the log had a master key: stored in clear and
   * still readable (retention can remove them, forget cannot). */
  uint64_t plain_events;
  uint64_t forget_sequence;  /* this forget's number in DIR/forgotten (1, 2, ...) */
} varve_forget_result;

/* Destroys every data key of `stream`, durably (event_log::forget): from its
 * return every read of the stream's encrypted events, in this process and in
 * others, hands them out with `forgotten` set and no payload. Later appends
 * to the stream get a new key. Snapshots are separate (`varve stream forget`
 * deletes them too). A stream that does not exist is VARVE_NOT_FOUND; a log
 * without a master key, or a stream with no encrypted event, is
 * VARVE_INVALID_ARGUMENT; a read-only log VARVE_READ_ONLY. `out` may be NULL.
 * Writer thread. */
VARVE_API varve_errc varve_forget(varve_log* log, varve_stream_id stream, varve_forget_result* out,
                                  varve_error* err) VARVE_C_NOEXCEPT;
/* Whether the log seals payloads (it has DIR/keys), with or without the
 * key in this open. Any thread. */
VARVE_API varve_errc varve_log_encrypted(const varve_log* log, bool* encrypted,
                                         varve_error* err) VARVE_C_NOEXCEPT;

/* ---- stream lifecycle (varve/lifecycle.h) ------------------------------- */

/* A stream's metadata (varve::stream_metadata); all zero: none. */
typedef struct varve_stream_metadata {
  /* A tombstone: the stream's events are hidden, reading it is
   * VARVE_STREAM_DELETED and appending to it too, for good. */
  bool deleted;
  uint64_t truncate_before; /* versions below it are hidden (0 and 1: none) */
  /* Only the newest max_count events are visible (0: no limit): stream reads
   * and varve_scavenge apply it, log reads cannot. */
  uint64_t max_count;
  uint64_t max_age_ns; /* events older than this are hidden, in every read (0: no limit) */
} varve_stream_metadata;

/* Changes to a stream's metadata (event_log::delete_stream, truncate_stream,
 * set_stream_limits). Each makes the log durable up to its committed end and
 * records the change in DIR/streams, synced, before it returns; every read
 * then hides what it covers (in this process at once, in others at their next
 * segment or the committed end). The events stay on disk until retention
 * removes their segments or varve_scavenge rewrites them. `out` (may be NULL)
 * gets the stream's metadata after the change; a change that changes nothing
 * writes nothing. A read-only log is VARVE_READ_ONLY; a deleted stream takes
 * no more changes (VARVE_STREAM_DELETED). Writer thread, not concurrently
 * with an append. */

/* Deletes (tombstones) `stream`: reading it is VARVE_STREAM_DELETED, its
 * events leave log reads and subscriptions, appends to it are refused with
 * VARVE_STREAM_DELETED, for good. A stream with no events is VARVE_NOT_FOUND;
 * deleting a deleted stream changes nothing. */
VARVE_API varve_errc varve_delete_stream(varve_log* log, varve_stream_id stream,
                                         varve_stream_metadata* out,
                                         varve_error* err) VARVE_C_NOEXCEPT;
/* Hides the versions of `stream` below `before`, at most its version + 1
 * (all of them: the stream goes on from its version). Only moves forward: a
 * `before` below the stream's truncate_before, or past its version + 1, is
 * VARVE_INVALID_ARGUMENT; a stream with no events VARVE_NOT_FOUND. */
VARVE_API varve_errc varve_truncate_stream(varve_log* log, varve_stream_id stream, uint64_t before,
                                           varve_stream_metadata* out,
                                           varve_error* err) VARVE_C_NOEXCEPT;
/* Replaces the limits of `stream` (0: none): keep the newest `max_count`
 * events, hide those older than `max_age_ns`. The stream need not exist yet. */
VARVE_API varve_errc varve_set_stream_limits(varve_log* log, varve_stream_id stream,
                                             uint64_t max_count, uint64_t max_age_ns,
                                             varve_stream_metadata* out,
                                             varve_error* err) VARVE_C_NOEXCEPT;
/* The metadata of `stream` into *out (all zero: none). Any log, read-only
 * too (it follows the writer's changes); any thread. */
VARVE_API varve_errc varve_stream_metadata_of(const varve_log* log, varve_stream_id stream,
                                              varve_stream_metadata* out,
                                              varve_error* err) VARVE_C_NOEXCEPT;

/* What varve_scavenge did (varve::scavenge_result). */
typedef struct varve_scavenge_result {
  uint64_t segments_examined;  /* sealed segments in DIR, the archived ones not counted */
  uint64_t segments_rewritten; /* (dry run: would be) */
  uint64_t events_removed;     /* hidden events whose bytes are gone (dry run: would go) */
  uint64_t bytes_freed;        /* disk blocks given back (st_blocks before - after); 0 in a dry run */
} varve_scavenge_result;

/* Gives back the disk space of hidden events (event_log::scavenge): rewrites
 * each sealed segment (not the archived ones) that holds whole batches of
 * them, each removed run becoming a hole of the same length; positions,
 * sequences and every other byte stay. Crash-safe (each segment is rewritten
 * to a new file, synced, checked and renamed over the old one). The space
 * returns once no process maps the old file (this one keeps it until
 * varve_log_close). A log with a tamper-evident chain is
 * VARVE_INVALID_ARGUMENT; a read-only log VARVE_READ_ONLY. dry_run: counts
 * what would go and changes nothing. `out` may be NULL. Writer thread, not
 * concurrently with an append. */
VARVE_API varve_errc varve_scavenge(varve_log* log, bool dry_run, varve_scavenge_result* out,
                                    varve_error* err) VARVE_C_NOEXCEPT;

/* ---- reading the log in order ------------------------------------------ */

typedef struct varve_reader varve_reader;

/* A cursor over committed events from `from` (0 = the beginning; a record
 * position such as an event's `position`, an append's `first` or `end`).
 * *out is owned by the caller (varve_reader_free). Any thread. */
VARVE_API varve_errc varve_reader_open(varve_log* log, uint64_t from, varve_reader** out,
                                       varve_error* err) VARVE_C_NOEXCEPT;
/* Fills `event` with the next committed event and sets *got = true; at the
 * end of what is committed now sets *got = false (not an error: call again to
 * follow the writer). A record that fails validation is VARVE_CORRUPTION
 * naming file and offset (the cursor stays on it), and so is a position
 * inside a record; one that cannot be a record's (not 8-byte aligned, past
 * the segment's records) is VARVE_INVALID_ARGUMENT. */
VARVE_API varve_errc varve_reader_next(varve_reader* reader, varve_event* event, bool* got,
                                       varve_error* err) VARVE_C_NOEXCEPT;
/* The bulk form of varve_reader_next, for scans: fills events[0, *count)
 * with the next committed events in order, *count = 0 at the end of what is
 * committed now (call again to follow the writer). At most `capacity`, and
 * at most 1024, per call; fewer where the reader's batch ends: at the end of
 * what is committed, after an event whose payload was decrypted or upcast
 * (it lives in the reader's buffer until the next call), and before a record
 * that fails validation: the events before it come back with VARVE_OK, the
 * next call returns VARVE_CORRUPTION naming file and offset (the cursor stays
 * on it). Each event is validated as varve_reader_next validates it;
 * varve_reader_event_ext then describes the last event of the batch. */
VARVE_API varve_errc varve_reader_next_batch(varve_reader* reader, varve_event* events,
                                             size_t capacity, size_t* count,
                                             varve_error* err) VARVE_C_NOEXCEPT;
/* The position the next call to varve_reader_next reads from. */
VARVE_API varve_errc varve_reader_where(const varve_reader* reader, uint64_t* position,
                                        varve_error* err) VARVE_C_NOEXCEPT;
/* Moves the cursor to a record position (checked by the next read). */
VARVE_API varve_errc varve_reader_seek(varve_reader* reader, uint64_t position,
                                       varve_error* err) VARVE_C_NOEXCEPT;
/* NULL: nothing. Any thread, once no other call on `reader` runs. */
VARVE_API void varve_reader_free(varve_reader* reader) VARVE_C_NOEXCEPT;

/* ---- reading one stream ------------------------------------------------ */

typedef struct varve_stream_reader varve_stream_reader;

typedef enum varve_direction { VARVE_FORWARD = 0, VARVE_BACKWARD = 1 } varve_direction;

/* One stream's events as the stream stands now, from version `from`: forward
 * (from, from+1, ...) or backward (from, from-1, ..., 1; VARVE_LATEST_VERSION
 * = the newest), at most `max_count` of them (UINT64_MAX = all). A stream that
 * does not exist reads as empty. It finds the events from the stream's newest
 * one down, so a damaged record on that way is VARVE_CORRUPTION here or in
 * varve_stream_reader_next. Writer thread (it looks up the stream's head); the
 * reader may then be used from any thread. */
VARVE_API varve_errc varve_stream_read(varve_log* log, varve_stream_id stream, uint64_t from,
                                       varve_direction direction, uint64_t max_count,
                                       varve_stream_reader** out,
                                       varve_error* err) VARVE_C_NOEXCEPT;
/* Like varve_reader_next; *got = false once the requested range is done. */
VARVE_API varve_errc varve_stream_reader_next(varve_stream_reader* reader, varve_event* event,
                                              bool* got, varve_error* err) VARVE_C_NOEXCEPT;
/* The stream's version when the read began (0: it did not exist). */
VARVE_API varve_errc varve_stream_reader_version(const varve_stream_reader* reader,
                                                 uint64_t* version,
                                                 varve_error* err) VARVE_C_NOEXCEPT;
VARVE_API void varve_stream_reader_free(varve_stream_reader* reader) VARVE_C_NOEXCEPT;

/* ---- subscriptions ------------------------------------------------------- */

typedef struct varve_subscription varve_subscription;

/* Which events a subscription wants (varve/event_filter.h); all-zero wants all.
 * An event passes when its type is listed (or no types are) and its stream
 * starts with a listed prefix or equals a listed stream (or neither list has
 * entries). Copied by varve_subscription_open. */
typedef struct varve_filter {
  const uint32_t* types;
  size_t type_count;
  const char* const* stream_prefixes; /* NUL-terminated, e.g. "order-" */
  size_t stream_prefix_count;
  const varve_stream_id* streams;
  size_t stream_count;
} varve_filter;

/* A cursor like varve_reader_open's that returns only the events `filter`
 * passes (NULL: every event) and, when `correlation_count` > 0, only those
 * whose correlation id is one of `correlation_ids` (events without one are
 * left out). Sealed segments whose index rules every event out (their types,
 * stream categories, or correlation filter: docs/FORMAT.md section 5a) are
 * skipped without reading them, so a lookup by correlation id reads only the
 * segments that may hold it. The lists are copied. Freed by
 * varve_reader_free; next/where/seek as for any reader. Any thread. */
VARVE_API varve_errc varve_reader_open_filtered(varve_log* log, uint64_t from,
                                                const varve_filter* filter,
                                                const varve_id128* correlation_ids,
                                                size_t correlation_count, varve_reader** out,
                                                varve_error* err) VARVE_C_NOEXCEPT;

typedef struct varve_subscription_options {
  /* Once caught up, how long next() spins before it parks on a futex. */
  int64_t spin_ns;
  /* NULL or "": unnamed. Else 1 to 100 of [A-Za-z0-9._-], not starting with
   * '.': the position is kept in DIR/subscriptions/NAME.pos; when that file
   * exists the subscription resumes there and `from` is ignored. */
  const char* name;
} varve_subscription_options;

/* Fills `options` with the defaults (those of varve::subscription_options). NULL: nothing. */
VARVE_API void varve_subscription_options_init(varve_subscription_options* options)
    VARVE_C_NOEXCEPT;

/* A cursor that reads history from `from` (0 = the beginning, a record
 * position, or VARVE_POSITION_END for live events only) and then follows the
 * writer live, with no gap and no duplicate. `filter` and `options` may be
 * NULL. Errors: VARVE_INVALID_ARGUMENT for a position past the committed end
 * or a bad name; VARVE_CORRUPTION for a damaged NAME.pos. Any thread. */
VARVE_API varve_errc varve_subscription_open(varve_log* log, uint64_t from,
                                             const varve_filter* filter,
                                             const varve_subscription_options* options,
                                             varve_subscription** out,
                                             varve_error* err) VARVE_C_NOEXCEPT;
/* Fills `event` with the next matching event (*got = true), waiting up to
 * `timeout_ns` for one once caught up (0: do not wait); *got = false when none
 * came. VARVE_CANCELLED after varve_subscription_cancel. */
VARVE_API varve_errc varve_subscription_next(varve_subscription* sub, varve_event* event,
                                             int64_t timeout_ns, bool* got,
                                             varve_error* err) VARVE_C_NOEXCEPT;
/* The bulk form of varve_subscription_next, for a consumer catching up:
 * fills events[0, *count) with the next matching events, waiting up to
 * `timeout_ns` for the first one once caught up; *count = 0 when none came.
 * Returns as soon as it has one, so *count may be below `capacity` while
 * more is committed; the batch rules of varve_reader_next_batch hold (at most
 * 1024; a decrypted or upcast payload last; a damaged record's error on the
 * next call). varve_subscription_event_ext describes the last event. */
VARVE_API varve_errc varve_subscription_next_batch(varve_subscription* sub, varve_event* events,
                                                   size_t capacity, int64_t timeout_ns,
                                                   size_t* count, varve_error* err) VARVE_C_NOEXCEPT;
/* Where the next read starts (resuming a new subscription there continues exactly). */
VARVE_API varve_errc varve_subscription_where(const varve_subscription* sub, uint64_t* position,
                                              varve_error* err) VARVE_C_NOEXCEPT;
/* How far behind the writer: committed events not yet read (filtered ones
 * included) and the position distance. Any thread, any time. */
VARVE_API varve_errc varve_subscription_lag(const varve_subscription* sub, uint64_t* events,
                                            uint64_t* bytes, varve_error* err) VARVE_C_NOEXCEPT;
/* Makes a parked or future next() return VARVE_CANCELLED. Any thread, any
 * time; async-signal-safe (a SIGINT handler may call it). */
VARVE_API varve_errc varve_subscription_cancel(varve_subscription* sub) VARVE_C_NOEXCEPT;
/* Named subscriptions: records that everything before `resume_at` (e.g. an
 * event's position + record_bytes) is processed; in memory and cheap. */
VARVE_API varve_errc varve_subscription_ack(varve_subscription* sub, uint64_t resume_at,
                                            varve_error* err) VARVE_C_NOEXCEPT;
/* Named subscriptions: makes the newest ack durable (atomic file replace and
 * fsync: milliseconds; call it per batch). After a crash the subscription
 * resumes at the last commit: at-least-once delivery. */
VARVE_API varve_errc varve_subscription_commit(varve_subscription* sub,
                                               varve_error* err) VARVE_C_NOEXCEPT;
/* NULL: nothing. Once no other call on `sub` runs (a concurrent cancel included). */
VARVE_API void varve_subscription_free(varve_subscription* sub) VARVE_C_NOEXCEPT;

/* ---- what varve_event has no room for ----------------------------------- */

/* More of the event a reader's last next() returned (zeros before one did):
 * the schema version its record holds (schema_version in varve_event is the
 * upcast one when the log has upcasters) and its metadata, encoded
 * (FORMAT.md 4.1a; walk it with varve_metadata_next). The metadata points
 * into the log's mapping, valid until the log is closed. */
typedef struct varve_event_ext {
  uint16_t stored_schema_version;
  const void* metadata;
  size_t metadata_size; /* 0: no metadata */
} varve_event_ext;

VARVE_API varve_errc varve_reader_event_ext(const varve_reader* reader, varve_event_ext* out,
                                            varve_error* err) VARVE_C_NOEXCEPT;
VARVE_API varve_errc varve_stream_reader_event_ext(const varve_stream_reader* reader,
                                                   varve_event_ext* out,
                                                   varve_error* err) VARVE_C_NOEXCEPT;
VARVE_API varve_errc varve_subscription_event_ext(const varve_subscription* sub,
                                                  varve_event_ext* out,
                                                  varve_error* err) VARVE_C_NOEXCEPT;

/* Walks encoded metadata: the entry at *cursor (start with 0) into *entry,
 * *cursor advanced past it: true; false at the end, or where the bytes are
 * not well-formed metadata (never reads past `size`). */
VARVE_API bool varve_metadata_next(const void* metadata, size_t size, size_t* cursor,
                                   varve_metadata_entry* entry) VARVE_C_NOEXCEPT;
/* The value of `key` in encoded metadata: true and *value / *value_size set. */
VARVE_API bool varve_metadata_find(const void* metadata, size_t size, const char* key,
                                   size_t key_size, const void** value,
                                   size_t* value_size) VARVE_C_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif
