#include "base/meta_file.h"

#include <algorithm>

#include "base/log_files.h"

namespace varve::meta_file {

status read(file_system& fs, const std::string& dir, segment_format::meta& m) {
  if (!fs.exists(dir)) return {errc::not_found, dir + ": no such directory"};
  const std::string path = log_files::join(dir, log_files::kMetaName);
  if (!fs.exists(path)) return {errc::not_a_log, dir + ": not a varve log (no " + log_files::kMetaName + ")"};
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  std::byte buf[segment_format::kMetaSize] = {};
  auto size = fs.file_size(fh);
  size_t n = size ? std::min<uint64_t>(size.value(), sizeof buf) : 0;
  status s = n ? fs.pread(fh, 0, buf, n) : status{};
  fs.close(fh);
  if (!s) return s;
  return segment_format::decode_meta(buf, n, path, m);
}

status write(file_system& fs, const std::string& dir, const segment_format::meta& m) {
  std::byte buf[segment_format::kMetaSize];
  segment_format::encode_meta(buf, m);
  // Crash story: without the rename the directory is not a log yet, and
  // create can simply be run again.
  return replace_file(fs, dir, log_files::kMetaName, buf, sizeof buf);
}

status replace_file(file_system& fs, const std::string& dir, const std::string& name, const std::byte* data,
                    size_t n) {
  const std::string path = log_files::join(dir, name);
  const std::string partial = path + log_files::kPartialSuffix;
  auto f = fs.open(partial, file_system::open_mode::create_or_open);
  if (!f) return f.error();
  file_handle fh = f.value();
  status s = fs.truncate(fh, 0);
  if (s) s = fs.pwrite(fh, 0, data, n);
  if (s) s = fs.datasync(fh);
  fs.close(fh);
  if (s) s = fs.rename(partial, path);
  if (s) s = fs.sync_dir(dir);
  if (!s) (void)fs.remove(partial);
  return s;
}

}  // namespace varve::meta_file
