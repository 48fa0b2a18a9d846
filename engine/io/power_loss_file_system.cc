#include "engine/io/power_loss_file_system.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

namespace varve {
namespace {

// Reads a whole file from an open descriptor; short or failed reads end it.
std::string read_fd(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return {};
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t r = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  out.resize(done);
  return out;
}

std::string read_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string s = read_fd(fd);
  ::close(fd);
  return s;
}

uint64_t fd_size(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

status write_whole(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return {errc::io_error, path + ": open: " + std::strerror(errno)};
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int e = errno;
      ::close(fd);
      return {errc::io_error, path + ": write: " + std::strerror(e)};
    }
    done += static_cast<size_t>(w);
  }
  ::close(fd);
  return {};
}

status make_dirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') continue;
    std::string p = path.substr(0, i);
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST)
      return {errc::io_error, p + ": mkdir: " + std::strerror(errno)};
  }
  return {};
}

}  // namespace

std::string power_loss_file_system::crash_report::to_string() const {
  return std::to_string(files) + " files, " + std::to_string(dirty_pages) + " dirty pages (" +
         std::to_string(pages_new) + " new, " + std::to_string(pages_torn) + " torn, " +
         std::to_string(pages_garbage) + " garbage, " + std::to_string(pages_old) + " old), " +
         std::to_string(journal_applied) + " of " + std::to_string(journal_pending) +
         " pending metadata changes kept, " + std::to_string(files_resized) +
         " files at a size other than their live one";
}

power_loss_file_system::power_loss_file_system(std::shared_ptr<file_system> base)
    : base_(std::move(base)) {}

power_loss_file_system::~power_loss_file_system() = default;

void power_loss_file_system::set_hook(std::function<void(const char*, const std::string&)> hook) {
  std::lock_guard<std::mutex> g(mu_);
  hook_ = std::move(hook);
}

uint64_t power_loss_file_system::syncs() const {
  std::lock_guard<std::mutex> g(mu_);
  return syncs_;
}

uint64_t power_loss_file_system::durable_bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t n = 0;
  for (const auto& [path, id] : durable_.names)
    if (id != 0)
      if (auto it = durable_.sizes.find(id); it != durable_.sizes.end()) n += it->second;
  return n;
}

void power_loss_file_system::after(const char* op, const std::string& path) {
  std::function<void(const char*, const std::string&)> h;
  {
    std::lock_guard<std::mutex> g(mu_);
    h = hook_;
  }
  if (h) h(op, path);
}

std::string power_loss_file_system::parent_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void power_loss_file_system::apply(ns_state& s, const entry& e) {
  switch (e.k) {
    case entry::link:
      s.names[e.path] = e.id;
      s.sizes.emplace(e.id, 0);
      break;
    case entry::unlink:
      s.names.erase(e.path);
      break;
    case entry::rename:
      s.names.erase(e.path);
      s.names[e.to] = e.id;
      s.sizes.emplace(e.id, 0);
      break;
    case entry::resize:
      s.sizes[e.id] = e.size;
      break;
    case entry::mkdir:
      s.names[e.path] = 0;
      break;
  }
}

// A file that existed before we saw it: durable as it is now.
uint64_t power_loss_file_system::adopt_locked(const std::string& path, int fd) {
  const uint64_t id = next_id_++;
  file& f = files_[id];
  f.durable = fd >= 0 ? read_fd(fd) : read_path(path);
  for (uint64_t p = 0; p * kPage < f.durable.size(); ++p) f.ever_durable_pages.insert(p);
  f.live_path = path;
  live_[path] = id;
  durable_.names[path] = id;
  durable_.sizes[id] = f.durable.size();
  return id;
}

void power_loss_file_system::make_durable_locked(uint64_t id, uint64_t from, uint64_t to, int fd) {
  file& f = files_[id];
  if (to <= from) return;
  if (f.durable.size() < to) f.durable.resize(to, '\0');
  uint64_t done = 0;
  while (from + done < to) {
    ssize_t r = ::pread(fd, f.durable.data() + from + done, to - from - done,
                        static_cast<off_t>(from + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<uint64_t>(r);
  }
  for (uint64_t p = from / kPage; p * kPage < to; ++p) f.ever_durable_pages.insert(p);
}

void power_loss_file_system::commit_matching_locked(const std::function<bool(const entry&)>& pred) {
  std::vector<entry> rest;
  rest.reserve(journal_.size());
  for (entry& e : journal_) {
    if (pred(e))
      apply(durable_, e);
    else
      rest.push_back(std::move(e));
  }
  journal_ = std::move(rest);
}

std::string power_loss_file_system::live_content_locked(uint64_t id) const {
  const file& f = files_.at(id);
  if (!f.fds.empty()) return read_fd(f.fds.front());
  if (!f.live_path.empty()) return read_path(f.live_path);
  return f.durable;  // unlinked and closed: nothing but what was durable
}

result<file_handle> power_loss_file_system::open(const std::string& path, open_mode mode) {
  const bool existed = base_->exists(path);
  auto r = base_->open(path, mode);
  if (!r) return r;
  const int fd = r.value().fd;
  bool created = false;
  {
    std::lock_guard<std::mutex> g(mu_);
    uint64_t id;
    if (auto it = live_.find(path); it != live_.end()) {
      id = it->second;
    } else if (!existed && mode != open_mode::read_only && mode != open_mode::read_write) {
      id = next_id_++;
      files_[id].live_path = path;
      live_[path] = id;
      journal_.push_back({entry::link, path, "", parent_of(path), id, 0});
      created = true;
    } else {
      id = adopt_locked(path, fd);
    }
    fd_id_[fd] = id;
    files_[id].fds.push_back(fd);
  }
  if (created) after("create", path);
  return r;
}

void power_loss_file_system::close(file_handle& f) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = fd_id_.find(f.fd); it != fd_id_.end()) {
      auto& fds = files_[it->second].fds;
      fds.erase(std::remove(fds.begin(), fds.end(), f.fd), fds.end());
      fd_id_.erase(it);
    }
  }
  base_->close(f);
}

status power_loss_file_system::allocate(const file_handle& f, uint64_t size) {
  status s = base_->allocate(f, size);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = fd_id_.find(f.fd); it != fd_id_.end())
      journal_.push_back({entry::resize, "", "", "", it->second, fd_size(f.fd)});
  }
  after("allocate", f.path);
  return s;
}

status power_loss_file_system::truncate(const file_handle& f, uint64_t size) {
  status s = base_->truncate(f, size);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = fd_id_.find(f.fd); it != fd_id_.end())
      journal_.push_back({entry::resize, "", "", "", it->second, size});
  }
  after("truncate", f.path);
  return s;
}

status power_loss_file_system::pwrite(const file_handle& f, uint64_t offset, const void* data,
                                      size_t n) {
  const uint64_t before = fd_size(f.fd);
  status s = base_->pwrite(f, offset, data, n);
  if (!s) return s;
  if (offset + n > before) {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = fd_id_.find(f.fd); it != fd_id_.end())
      journal_.push_back({entry::resize, "", "", "", it->second, offset + n});
  }
  after("pwrite", f.path);
  return s;
}

status power_loss_file_system::datasync(const file_handle& f) {
  status s = base_->datasync(f);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    ++syncs_;
    if (auto it = fd_id_.find(f.fd); it != fd_id_.end()) {
      const uint64_t id = it->second;
      const uint64_t size = fd_size(f.fd);
      make_durable_locked(id, 0, size, f.fd);
      files_[id].durable.resize(size);
      commit_matching_locked([id](const entry& e) { return e.k == entry::resize && e.id == id; });
      durable_.sizes[id] = size;
    }
  }
  after("datasync", f.path);
  return s;
}

result<void*> power_loss_file_system::map(const file_handle& f, uint64_t size, map_access access) {
  auto r = base_->map(f, size, access);
  if (!r) return r;
  std::lock_guard<std::mutex> g(mu_);
  if (auto it = fd_id_.find(f.fd); it != fd_id_.end())
    maps_[reinterpret_cast<uintptr_t>(r.value())] = {it->second, size};
  return r;
}

void power_loss_file_system::unmap(void* addr, uint64_t size) {
  {
    std::lock_guard<std::mutex> g(mu_);
    maps_.erase(reinterpret_cast<uintptr_t>(addr));
  }
  base_->unmap(addr, size);
}

status power_loss_file_system::sync_range(const file_handle& f, void* addr, uint64_t n) {
  status s = base_->sync_range(f, addr, n);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    ++syncs_;
    const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
    auto it = maps_.upper_bound(a);
    if (it != maps_.begin()) {
      --it;
      const uint64_t id = it->second.first;
      const uint64_t off = a - it->first;
      if (off < it->second.second) {
        const uint64_t size = fd_size(f.fd);
        // msync writes whole pages.
        const uint64_t from = off / kPage * kPage;
        const uint64_t to = std::min({(off + n + kPage - 1) / kPage * kPage, it->second.second, size});
        make_durable_locked(id, from, to, f.fd);
        commit_matching_locked([id](const entry& e) { return e.k == entry::resize && e.id == id; });
        durable_.sizes[id] = size;
      }
    }
  }
  after("sync_range", f.path);
  return s;
}

status power_loss_file_system::rename(const std::string& from, const std::string& to) {
  status s = base_->rename(from, to);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    uint64_t id;
    if (auto it = live_.find(from); it != live_.end()) {
      id = it->second;
      live_.erase(it);
    } else {
      // Never seen: it was durable under its old name.
      id = next_id_++;
      file& f = files_[id];
      f.durable = read_path(to);
      for (uint64_t p = 0; p * kPage < f.durable.size(); ++p) f.ever_durable_pages.insert(p);
      durable_.names[from] = id;
      durable_.sizes[id] = f.durable.size();
    }
    if (auto old = live_.find(to); old != live_.end()) files_[old->second].live_path.clear();
    live_[to] = id;
    files_[id].live_path = to;
    journal_.push_back({entry::rename, from, to, parent_of(to), id, 0});
  }
  after("rename", to);
  return s;
}

status power_loss_file_system::remove(const std::string& path) {
  status s = base_->remove(path);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = live_.find(path); it != live_.end()) {
      files_[it->second].live_path.clear();
      live_.erase(it);
    }
    journal_.push_back({entry::unlink, path, "", parent_of(path), 0, 0});
  }
  after("remove", path);
  return s;
}

status power_loss_file_system::sync_dir(const std::string& dir) {
  status s = base_->sync_dir(dir);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    ++syncs_;
    commit_matching_locked([&](const entry& e) { return e.k != entry::resize && e.dir == dir; });
  }
  after("sync_dir", dir);
  return s;
}

status power_loss_file_system::sync_filesystem(const std::string& dir) {
  status s = base_->sync_filesystem(dir);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    ++syncs_;
    for (auto& [id, f] : files_) {
      if (f.fds.empty() && f.live_path.empty()) continue;
      std::string live = live_content_locked(id);
      for (uint64_t p = 0; p * kPage < live.size(); ++p) f.ever_durable_pages.insert(p);
      durable_.sizes[id] = live.size();
      f.durable = std::move(live);
    }
    commit_matching_locked([](const entry&) { return true; });
    // Sizes follow the content just copied, whatever the journal said.
    for (auto& [id, f] : files_)
      if (!f.fds.empty() || !f.live_path.empty()) durable_.sizes[id] = f.durable.size();
  }
  after("sync_filesystem", dir);
  return s;
}

status power_loss_file_system::create_dir(const std::string& dir) {
  const bool existed = base_->exists(dir);
  status s = base_->create_dir(dir);
  if (!s) return s;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (live_dirs_.insert(dir).second) {
      if (existed)
        durable_.names[dir] = 0;  // there before we looked: durable
      else
        journal_.push_back({entry::mkdir, dir, "", parent_of(dir), 0, 0});
    }
  }
  if (!existed) after("create_dir", dir);
  return s;
}

result<std::vector<std::string>> power_loss_file_system::list_dir(const std::string& dir) {
  auto r = base_->list_dir(dir);
  if (!r) return r;
  std::lock_guard<std::mutex> g(mu_);
  if (live_dirs_.insert(dir).second && !durable_.names.count(dir)) durable_.names[dir] = 0;
  for (const std::string& n : r.value()) {
    const std::string path = dir + "/" + n;
    struct stat st;
    if (live_.count(path) || ::stat(path.c_str(), &st) != 0) continue;
    if (S_ISREG(st.st_mode)) {
      adopt_locked(path, -1);
    } else if (S_ISDIR(st.st_mode) && live_dirs_.insert(path).second) {
      durable_.names.emplace(path, 0);
    }
  }
  return r;
}

status power_loss_file_system::crash(const std::string& root, const std::string& target,
                                     uint64_t seed, crash_report* report) {
  return crash(root, target, seed, crash_options{}, report);
}

status power_loss_file_system::crash(const std::string& root, const std::string& target,
                                     uint64_t seed, const crash_options& o, crash_report* report) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  crash_report rep;
  struct out_file {
    std::string rel;
    std::string bytes;
  };
  std::vector<std::string> dirs;
  std::vector<out_file> outs;
  {
    std::lock_guard<std::mutex> g(mu_);
    // Metadata: everything durable plus a prefix of the journal.
    ns_state ns = durable_;
    rep.journal_pending = journal_.size();
    rep.journal_applied = journal_.empty() ? 0 : rng() % (journal_.size() + 1);
    for (uint64_t i = 0; i < rep.journal_applied; ++i) apply(ns, journal_[i]);

    const std::string prefix = root + "/";
    auto dir_survives = [&](const std::string& path) {
      for (std::string p = parent_of(path); p.size() > root.size(); p = parent_of(p)) {
        auto it = ns.names.find(p);
        if (it == ns.names.end() || it->second != 0) return false;
      }
      return true;
    };
    for (const auto& [path, id] : ns.names) {
      if (path.compare(0, prefix.size(), prefix) != 0 || !dir_survives(path)) continue;
      const std::string rel = path.substr(prefix.size());
      if (id == 0) {
        dirs.push_back(rel);
        continue;
      }
      const file& f = files_.at(id);
      const uint64_t size = ns.sizes.count(id) ? ns.sizes.at(id) : 0;
      std::string live = live_content_locked(id);
      if (live.size() != size) ++rep.files_resized;
      std::string bytes = f.durable;
      bytes.resize(size, '\0');
      ++rep.files;
      for (uint64_t p = 0; p * kPage < size; ++p) {
        const uint64_t from = p * kPage, to = std::min(size, from + kPage);
        std::string lp = from < live.size() ? live.substr(from, to - from) : std::string();
        lp.resize(to - from, '\0');
        if (std::memcmp(lp.data(), bytes.data() + from, to - from) == 0) continue;
        ++rep.dirty_pages;
        const double u = unit(rng);
        if (u < o.page_new) {
          std::memcpy(bytes.data() + from, lp.data(), to - from);
          ++rep.pages_new;
        } else if (u < o.page_new + o.page_torn) {
          for (uint64_t s = from; s < to; s += kSector)
            if (rng() & 1)
              std::memcpy(bytes.data() + s, lp.data() + (s - from), std::min(kSector, to - s));
          ++rep.pages_torn;
        } else if (u < o.page_new + o.page_torn + o.page_garbage && !f.ever_durable_pages.count(p)) {
          const bool whole = rng() & 1;
          for (uint64_t s = from; s < to; ++s) {
            if (!whole && (s - from) % kSector == 0 && (rng() & 1)) {
              // This sector is written correctly (new) or not at all (old).
              const uint64_t end = std::min(s + kSector, to);
              if (rng() & 1) std::memcpy(bytes.data() + s, lp.data() + (s - from), end - s);
              s = end - 1;
              continue;
            }
            bytes[s] = static_cast<char>(rng());
          }
          ++rep.pages_garbage;
        } else {
          ++rep.pages_old;
        }
      }
      outs.push_back({rel, std::move(bytes)});
    }
  }
  if (status s = make_dirs(target); !s) return s;
  std::sort(dirs.begin(), dirs.end());
  for (const std::string& d : dirs)
    if (status s = make_dirs(target + "/" + d); !s) return s;
  for (const out_file& f : outs)
    if (status s = write_whole(target + "/" + f.rel, f.bytes); !s) return s;
  if (report) *report = rep;
  return {};
}

}  // namespace varve
