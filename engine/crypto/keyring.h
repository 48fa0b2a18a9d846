// Crypto-shredding's key store: DIR/keys (the data keys, wrapped by the
// application's master key) and DIR/forgotten (the journal of forgets).
// docs/DESIGN.md "Crypto-shredding"; docs/FORMAT.md 4.1b, 5c, 5d.
//
// Readers of every kind call open_payload (thread-safe, no lock on the hot
// path) to turn an encrypted record's payload into its plaintext, or into
// "forgotten". The writer seals payloads with seal(), and forget() destroys
// keys. Readers in other processes see a forget at their next event of the
// stream: they check the key's state word in their shared read-only mapping
// of DIR/keys, which the writer's pwrite changes in the page cache.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "varve/crypto.h"
#include "varve/event.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::detail {

// An encrypted payload: key slot (u32), nonce (24), ciphertext, tag (16).
inline constexpr uint32_t kSealOverhead = 4 + 24 + 16;

class keyring : public std::enable_shared_from_this<keyring> {
 public:
  static constexpr const char* kKeysName = "keys";
  static constexpr const char* kJournalName = "forgotten";
  static constexpr uint32_t kEntrySize = 128;

  // Opens DIR/keys with `key`, creating it (and DIR/forgotten) when absent
  // and `create` is set. The master key is checked against the file's
  // header: another key is errc::invalid_argument. `writable`: this process
  // is the log's writer (it adds keys and forgets).
  static result<std::shared_ptr<keyring>> open(std::shared_ptr<file_system> fs, const std::string& dir,
                                               uint64_t log_id, const master_key& key, bool writable,
                                               bool create);
  ~keyring();
  keyring(const keyring&) = delete;
  keyring& operator=(const keyring&) = delete;

  // --- readers (any thread) ---
  // `ev` holds an encrypted record's payload: on success its payload is the
  // plaintext (in `buf`), or empty with ev.forgotten set. A payload that
  // does not authenticate, or names a key that is not there, is
  // errc::corruption naming the position (and DIR/keys' offset).
  status open_payload(event_view& ev, std::string& buf) const;

  // --- the writer (its thread) ---
  // Encrypts `plain` for `stream` into dst (plain.size() + kSealOverhead
  // bytes), with key `slot` (from writer_slot).
  void seal(uint32_t slot, std::string_view stream, std::span<const std::byte> plain, std::byte* dst);
  // Whether the key in `slot` (named by a stream's last record) is live and
  // so may seal the stream's next events; false when it was destroyed, or
  // cannot be read (the stream then gets a new key).
  bool usable(uint32_t slot) const;
  // A new data key, durable in DIR/keys before it is returned.
  // Keys come in batches made ahead by the runner (set_runner) while the
  // current batch is used up; only when none is ready does the writer make
  // one itself (a pwrite and an fdatasync on its own thread).
  result<uint32_t> new_slot();
  // Where batches of keys are made ahead (the preparer thread); empty: the
  // writer makes every batch itself. Writer thread.
  void set_runner(std::function<void(std::function<void()>)> run) { runner_ = std::move(run); }
  // Destroys the keys in `slots` for `stream` (journal first, then the keys,
  // each step synced). `integer`: the stream id is an integer's 8 bytes.
  result<uint64_t> forget(std::string_view stream, bool integer, const std::vector<uint32_t>& slots);
  // Finishes the forgets a crash interrupted: every slot the journal names
  // is destroyed. Returns how many keys that took (0 normally).
  result<uint64_t> finish_forgets();

  // The journal (any process, no key needed).
  static result<std::vector<forgotten_stream>> read_journal(file_system& fs, const std::string& dir,
                                                            uint64_t log_id);
  static bool exists(file_system& fs, const std::string& dir);

 private:
  keyring(std::shared_ptr<file_system> fs, std::string dir, uint64_t log_id, const master_key& key, bool writable);
  struct cached;
  struct journal_entry {
    uint64_t seq = 0;
    uint64_t time_ns = 0;
    std::string stream;
    bool integer = false;
    std::vector<uint32_t> slots;
  };
  static result<std::vector<journal_entry>> read_journal_entries(file_system& fs, const std::string& dir,
                                                                 uint64_t log_id, uint64_t* valid_end);
  // The key of `slot`, unwrapped (cached); nullptr with `why` set when it is
  // destroyed (why empty) or damaged.
  const cached* key_of(uint32_t slot, std::string& why) const;
  bool live_in_file(uint32_t slot) const;
  uint64_t slots_in_file() const;
  status write_destroyed(uint32_t slot);
  // Makes n keys at the end of the file, durable, their cache entries live;
  // returns the first slot. Any thread (the file's end is reserved under
  // batch_mu_, so the writer and the runner never write the same entries).
  result<uint64_t> make_batch(uint32_t n);

  std::shared_ptr<file_system> fs_;
  std::string dir_;
  std::string path_;
  uint64_t log_id_;
  std::array<uint8_t, 32> master_;
  bool writable_;
  file_handle file_;
  const std::byte* map_ = nullptr;  // DIR/keys, read-only, kMapBytes of address space
  mutable std::atomic<uint64_t> known_size_{0};
  mutable std::mutex mu_;  // unwrapping into the cache, refreshing known_size_
  // Unwrapped keys by slot, in chunks that never move once made.
  mutable std::unique_ptr<std::atomic<cached*>[]> chunks_;

  // Writer only.
  uint64_t next_slot_ = 0;    // the next fresh key to hand out
  uint64_t range_end_ = 0;    // keys [next_slot_, range_end_) are durable and unused
  uint32_t batch_ = 8;        // keys made per batch: doubles up to kMaxBatch
  std::function<void(std::function<void()>)> runner_;
  std::mutex batch_mu_;       // guards the three below
  uint64_t file_end_ = 0;     // slots reserved so far (the next batch starts here)
  std::vector<std::pair<uint64_t, uint64_t>> ready_;  // batches made ahead: [first, end)
  bool making_ = false;       // a batch is on its way on the runner
  std::array<uint8_t, 16> nonce_prefix_{};  // random per session
  uint64_t nonce_counter_ = 0;
  uint64_t journal_end_ = 0;  // where the next journal entry goes
  uint64_t journal_seq_ = 0;  // the last forget's number
};

}  // namespace varve::detail
