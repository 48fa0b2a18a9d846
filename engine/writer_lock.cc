#include "engine/writer_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/sync/file_lock.hpp>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>

#include "base/log_files.h"

namespace varve {
namespace {

std::mutex g_mu;
std::set<std::pair<dev_t, ino_t>>& held() {
  static std::set<std::pair<dev_t, ino_t>> s;
  return s;
}

}  // namespace

struct writer_lock::impl {
  std::pair<dev_t, ino_t> key;
  boost::interprocess::file_lock lock;
};

result<std::unique_ptr<writer_lock>> writer_lock::acquire(const std::string& dir) {
  const std::string path = log_files::join(dir, log_files::kLockName);
  // Held throughout: a thread creating the lock file below must not close its
  // descriptor while another thread of this process has just locked the file.
  std::lock_guard<std::mutex> g(g_mu);
  // Identify the file with stat(), never with an open()/close() pair: if this
  // process already holds the lock, closing any descriptor of the file would
  // silently release it (POSIX record-lock semantics).
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return status(errc::io_error, path + ": stat: " + std::strerror(errno));
    // The file did not exist, so nobody in this process can hold a lock on it.
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      return status(errno == ENOSPC ? errc::no_space : errc::io_error,
                    path + ": cannot create lock file: " + std::strerror(errno));
    ::close(fd);
    if (::stat(path.c_str(), &st) != 0)
      return status(errc::io_error, path + ": stat: " + std::strerror(errno));
  }

  auto key = std::make_pair(st.st_dev, st.st_ino);
  if (held().count(key))
    return status(errc::locked, dir + ": the log is already open for writing in this process");
  auto i = std::make_unique<impl>();
  i->key = key;
  try {
    i->lock = boost::interprocess::file_lock(path.c_str());
    if (!i->lock.try_lock())
      return status(errc::locked, dir + ": another process holds the writer lock (" + path + ")");
  } catch (const boost::interprocess::interprocess_exception& e) {
    return status(errc::io_error, path + ": file lock: " + e.what());
  }
  held().insert(key);
  return std::unique_ptr<writer_lock>(new writer_lock(std::move(i)));
}

bool writer_lock::is_held(const std::string& dir) {
  const std::string path = log_files::join(dir, log_files::kLockName);
  // Under g_mu: no thread of this process can take the lock while we hold a
  // descriptor of the file (closing it would drop their lock).
  std::lock_guard<std::mutex> g(g_mu);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  if (held().count(std::make_pair(st.st_dev, st.st_ino))) return true;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  const bool held_elsewhere = ::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  return held_elsewhere;
}

writer_lock::writer_lock(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

writer_lock::~writer_lock() {
  std::lock_guard<std::mutex> g(g_mu);
  try {
    impl_->lock.unlock();
  } catch (...) {
  }
  held().erase(impl_->key);
}

}  // namespace varve
