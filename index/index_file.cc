#include "index/index_file.h"

#include "base/log_files.h"

namespace varve::index_file {

status write(file_system& fs, const std::string& dir, const std::string& name,
             std::span<const std::byte> bytes) {
  const std::string final_path = log_files::join(dir, name);
  const std::string partial = final_path + log_files::kPartialSuffix;
  auto f = fs.open(partial, file_system::open_mode::create_or_open);
  if (!f) return f.error();
  file_handle fh = f.value();
  status s = fs.truncate(fh, 0);
  if (s) s = fs.pwrite(fh, 0, bytes.data(), bytes.size());
  if (s) s = fs.datasync(fh);
  fs.close(fh);
  if (s) s = fs.rename(partial, final_path);
  if (s) s = fs.sync_dir(dir);
  if (!s) (void)fs.remove(partial);
  return s;
}

result<std::vector<std::byte>> read(file_system& fs, const std::string& path, size_t min_size) {
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = fs.file_size(fh);
  if (!size) {
    fs.close(fh);
    return size.error();
  }
  std::vector<std::byte> buf(size.value());
  status s = size.value() < min_size
                 ? status(errc::corruption, path + ": truncated: " + std::to_string(size.value()) +
                                                " bytes")
                 : fs.pread(fh, 0, buf.data(), buf.size());
  fs.close(fh);
  if (!s) return s;
  return buf;
}

}  // namespace varve::index_file
