// Crypto-shredding: per-stream data keys, so that one stream's payloads can
// be erased from an append-only log by destroying its key (GDPR's right to
// erasure without rewriting history). docs/DESIGN.md "Crypto-shredding" has
// the design, docs/FORMAT.md sections 4.1b, 5c and 5d the bytes.
//
// A log opened with log_options::master_key encrypts every payload it
// appends with its stream's own data key (XChaCha20-Poly1305, libsodium);
// the data keys live in DIR/keys wrapped by the master key, which the
// application keeps (the log never stores it). event_log::forget(stream)
// destroys that stream's keys durably: afterwards its events still read back
// with their type, stream, version, position, ids and metadata, and their
// checksums still verify, but with event_view::forgotten set and an empty
// payload, in every read path. The stream id and the metadata are never
// encrypted: keep personal data out of them.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "varve/export.h"
#include "varve/status.h"

namespace varve {

// The application's key: 32 bytes from a CSPRNG. Whoever holds it and the
// log directory can read every stream not yet forgotten.
struct master_key {
  std::array<uint8_t, 32> bytes{};
};

// A fresh master key (libsodium's randombytes).
VARVE_API master_key generate_master_key();

// Reads a key file: 64 hexadecimal digits (a trailing newline allowed), as
// save_master_key and `varve keygen` write, or 32 raw bytes. Anything else
// is errc::invalid_argument naming the file.
VARVE_API result<master_key> load_master_key(const std::string& path);

// Writes `key` as 64 hex digits and a newline to a new file of mode 0600
// (an existing file is errc::already_exists), synced.
VARVE_API status save_master_key(const std::string& path, const master_key& key);

// What event_log::forget did.
struct forget_result {
  uint64_t keys_destroyed = 0;   // data keys of the stream, destroyed
  uint64_t events_forgotten = 0; // its encrypted events, now unreadable
  // Its events appended before the log had a master key: stored in clear,
  // still readable (forget cannot erase them; retention or a scavenge can).
  uint64_t plain_events = 0;
  uint64_t forget_sequence = 0;  // this forget's number in DIR/forgotten (1, 2, ...)
};

// One forgotten stream, as DIR/forgotten records it (event_log::forgotten).
struct forgotten_stream {
  uint64_t forget_sequence = 0;  // dense, from 1, in the order of the forgets
  uint64_t time_ns = 0;          // CLOCK_REALTIME of the forget
  std::string stream;            // raw id bytes
  bool stream_is_integer = false;
};

}  // namespace varve
