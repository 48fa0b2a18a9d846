#include "engine/lost_found.h"

#include <time.h>

#include <cstdio>

#include "base/log_files.h"

namespace varve::detail {

lost_found::lost_found(file_system& fs, std::string log_dir)
    : fs_(fs), log_dir_(std::move(log_dir)), dir_(log_files::join(log_dir_, log_files::kLostFoundDir)) {}

status lost_found::ensure_dir() {
  if (ready_) return {};
  const bool existed = fs_.exists(dir_);
  if (status s = fs_.create_dir(dir_); !s) return s;
  // Crash story: the directory's own entry must be durable before anything
  // inside it is relied on, or a power loss could drop it with its contents.
  if (!existed)
    if (status s = fs_.sync_dir(log_dir_); !s) return s;
  ready_ = true;
  return {};
}

result<std::string> lost_found::keep_bytes(const std::string& file, uint64_t offset,
                                           const std::byte* data, uint64_t n) {
  if (status s = ensure_dir(); !s) return s;
  const std::string path =
      log_files::join(dir_, log_files::lost_bytes_name(log_files::base_name(file), offset));
  const std::string partial = path + log_files::kPartialSuffix;
  auto f = fs_.open(partial, file_system::open_mode::create_or_open);
  if (!f) return f.error();
  file_handle fh = f.value();
  status s = fs_.truncate(fh, 0);
  if (s && n) s = fs_.pwrite(fh, 0, data, n);
  if (s) s = fs_.datasync(fh);
  fs_.close(fh);
  // Crash story: until the rename and the directory sync, a power loss leaves
  // at most a .partial here, and the originals are still untouched (the
  // caller zeroes them only after this returns).
  if (s) s = fs_.rename(partial, path);
  if (s) s = fs_.sync_dir(dir_);
  if (!s) {
    (void)fs_.remove(partial);
    return s;
  }
  return path;
}

result<std::string> lost_found::keep_file(const std::string& path) {
  if (status s = ensure_dir(); !s) return s;
  const std::string name(log_files::base_name(path));
  std::string target = log_files::join(dir_, name);
  for (int i = 1; fs_.exists(target); ++i) target = log_files::join(dir_, name + "." + std::to_string(i));
  if (status s = fs_.rename(path, target); !s) return s;
  // Both entries: the file must not come back under its old name (it would
  // rejoin the log) nor vanish (its bytes are what we promised to keep).
  if (status s = fs_.sync_dir(dir_); !s) return s;
  const std::string from_dir(path.substr(0, path.size() - name.size()));
  if (status s = fs_.sync_dir(from_dir.empty() ? std::string(".") : from_dir); !s) return s;
  return target;
}

void lost_found::note(const std::string& line) {
  if (!ensure_dir()) return;
  const std::string path = log_files::join(dir_, log_files::kLostFoundReport);
  auto f = fs_.open(path, file_system::open_mode::create_or_open);
  if (!f) return;
  file_handle fh = f.value();
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  ::gmtime_r(&ts.tv_sec, &tm);
  char stamp[40];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02dZ ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  const std::string text = stamp + line + "\n";
  auto size = fs_.file_size(fh);
  if (size && fs_.pwrite(fh, size.value(), text.data(), text.size())) (void)fs_.datasync(fh);
  fs_.close(fh);
}

}  // namespace varve::detail
