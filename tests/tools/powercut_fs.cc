// Copied from the team's shared tools (shared/tools/powercut_fs), so a clean clone can
// build and run the power-cut test on its own.
// A FUSE file system that can lose power. It keeps every file in memory twice:
// what programs see (cur) and what would survive a power cut (dur). fsync or
// fdatasync of a file makes its content durable; any fsync or fsyncdir also
// commits the namespace (creates, renames, unlinks), as ext4's one journal does.
// Writing anything to /.crash "cuts the power": the durable image is written to
// --dump DIR and every later operation fails with EIO.
//   powercut_fs MOUNTPOINT --dump DIR [--load DIR] [-f] [-s]
#define FUSE_USE_VERSION 35
#include <fuse.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace fs = std::filesystem;
struct Inode { bool dir = false; std::vector<char> cur, dur; };
using Ns = std::map<std::string, std::shared_ptr<Inode>>;
static Ns cur_ns, dur_ns;
static std::mutex mu;
static bool crashed = false;
static std::string dump_dir, load_dir;
static long long n_fsync = 0;

static void commit_ns() { dur_ns = cur_ns; }
static std::string parent(const std::string& p) { auto k = p.rfind('/'); return k == 0 ? "/" : p.substr(0, k); }

static void dump() {
  fs::create_directories(dump_dir);
  for (auto& [p, n] : dur_ns) {
    if (p == "/") continue;
    fs::path out = fs::path(dump_dir) / p.substr(1);
    if (n->dir) { fs::create_directories(out); continue; }
    fs::create_directories(out.parent_path());
    std::ofstream(out, std::ios::binary).write(n->dur.data(), n->dur.size());
  }
  std::ofstream(fs::path(dump_dir) / ".powercut-info") << "fsyncs " << n_fsync << "\n";
}

static void load() {
  cur_ns["/"] = std::make_shared<Inode>(); cur_ns["/"]->dir = true;
  if (!load_dir.empty() && fs::exists(load_dir))
    for (auto& e : fs::recursive_directory_iterator(load_dir)) {
      std::string rel = "/" + fs::relative(e.path(), load_dir).string();
      if (rel == "/.powercut-info") continue;
      auto n = std::make_shared<Inode>();
      if (e.is_directory()) n->dir = true;
      else { std::ifstream in(e.path(), std::ios::binary); n->cur.assign(std::istreambuf_iterator<char>(in), {}); n->dur = n->cur; }
      cur_ns[rel] = n;
    }
  commit_ns();
}

#define GUARD std::lock_guard<std::mutex> g(mu); if (crashed) return -EIO
static std::shared_ptr<Inode> find(const char* p) { auto it = cur_ns.find(p); return it == cur_ns.end() ? nullptr : it->second; }

static int op_getattr(const char* p, struct stat* st, fuse_file_info*) {
  GUARD; memset(st, 0, sizeof *st);
  if (!strcmp(p, "/.crash")) { st->st_mode = S_IFREG | 0666; st->st_nlink = 1; return 0; }
  auto n = find(p); if (!n) return -ENOENT;
  st->st_mode = n->dir ? (S_IFDIR | 0755) : (S_IFREG | 0644); st->st_nlink = n->dir ? 2 : 1;
  st->st_size = n->cur.size(); st->st_blocks = (n->cur.size() + 511) / 512; st->st_blksize = 4096;
  return 0;
}
static int op_readdir(const char* p, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info*, fuse_readdir_flags) {
  GUARD; auto n = find(p); if (!n || !n->dir) return -ENOTDIR;
  fill(buf, ".", nullptr, 0, fuse_fill_dir_flags(0)); fill(buf, "..", nullptr, 0, fuse_fill_dir_flags(0));
  std::string pre = strcmp(p, "/") ? std::string(p) + "/" : "/";
  for (auto& [q, m] : cur_ns)
    if (q.size() > pre.size() && q.compare(0, pre.size(), pre) == 0 && q.find('/', pre.size()) == std::string::npos)
      fill(buf, q.c_str() + pre.size(), nullptr, 0, fuse_fill_dir_flags(0));
  return 0;
}
static int op_mkdir(const char* p, mode_t) {
  GUARD; if (find(p)) return -EEXIST; auto d = find(parent(p).c_str()); if (!d || !d->dir) return -ENOENT;
  auto n = std::make_shared<Inode>(); n->dir = true; cur_ns[p] = n; return 0;
}
static int op_rmdir(const char* p) {
  GUARD; auto n = find(p); if (!n) return -ENOENT; if (!n->dir) return -ENOTDIR;
  std::string pre = std::string(p) + "/";
  for (auto& [q, m] : cur_ns) if (q.compare(0, pre.size(), pre) == 0) return -ENOTEMPTY;
  cur_ns.erase(p); return 0;
}
static int op_create(const char* p, mode_t, fuse_file_info*) {
  GUARD; if (find(p)) return 0; auto d = find(parent(p).c_str()); if (!d || !d->dir) return -ENOENT;
  cur_ns[p] = std::make_shared<Inode>(); return 0;
}
static void do_crash() {
  crashed = true; dump();
}
static int op_open(const char* p, fuse_file_info* fi) {
  GUARD; if (!strcmp(p, "/.crash")) return 0;
  auto n = find(p); if (!n) return -ENOENT; if (n->dir) return -EISDIR;
  if (fi->flags & O_TRUNC) n->cur.clear();
  return 0;
}
static int op_read(const char* p, char* buf, size_t sz, off_t off, fuse_file_info*) {
  GUARD; auto n = find(p); if (!n) return -ENOENT;
  if (off >= off_t(n->cur.size())) return 0;
  size_t k = std::min(sz, n->cur.size() - size_t(off)); memcpy(buf, n->cur.data() + off, k); return int(k);
}
static int op_write(const char* p, const char* buf, size_t sz, off_t off, fuse_file_info*) {
  GUARD;
  if (!strcmp(p, "/.crash")) { do_crash(); return int(sz); }
  auto n = find(p); if (!n) return -ENOENT;
  if (size_t(off) + sz > n->cur.size()) n->cur.resize(off + sz);
  memcpy(n->cur.data() + off, buf, sz); return int(sz);
}
static int op_truncate(const char* p, off_t sz, fuse_file_info*) {
  GUARD; if (!strcmp(p, "/.crash")) return 0; auto n = find(p); if (!n) return -ENOENT; n->cur.resize(sz); return 0;
}
static int op_fallocate(const char* p, int mode, off_t off, off_t len, fuse_file_info*) {
  GUARD; auto n = find(p); if (!n) return -ENOENT;
  if (mode & FALLOC_FL_PUNCH_HOLE) { size_t e = std::min(n->cur.size(), size_t(off + len)); if (size_t(off) < e) memset(n->cur.data() + off, 0, e - off); return 0; }
  if (mode & ~FALLOC_FL_KEEP_SIZE) return -EOPNOTSUPP;
  if (!(mode & FALLOC_FL_KEEP_SIZE) && size_t(off + len) > n->cur.size()) n->cur.resize(off + len);
  return 0;
}
static int op_unlink(const char* p) { GUARD; if (!find(p)) return -ENOENT; cur_ns.erase(p); return 0; }
static int op_rename(const char* a, const char* b, unsigned int flags) {
  GUARD; auto n = find(a); if (!n) return -ENOENT;
  if ((flags & RENAME_NOREPLACE) && find(b)) return -EEXIST;
  if (n->dir) {
    std::string pa = std::string(a) + "/"; Ns moved;
    for (auto it = cur_ns.begin(); it != cur_ns.end();)
      if (it->first.compare(0, pa.size(), pa) == 0) { moved[std::string(b) + "/" + it->first.substr(pa.size())] = it->second; it = cur_ns.erase(it); } else ++it;
    for (auto& kv : moved) cur_ns.insert(kv);
  }
  cur_ns.erase(a); cur_ns[b] = n; return 0;
}
static int op_fsync(const char* p, int, fuse_file_info*) {
  GUARD; auto n = find(p); if (!n) return -ENOENT; n->dur = n->cur; commit_ns(); n_fsync++; return 0;
}
static int op_fsyncdir(const char*, int, fuse_file_info*) { GUARD; commit_ns(); return 0; }
static int op_flush(const char*, fuse_file_info*) { GUARD; return 0; }
static int op_release(const char*, fuse_file_info*) { return 0; }
static int op_utimens(const char*, const timespec*, fuse_file_info*) { GUARD; return 0; }
static int op_chmod(const char*, mode_t, fuse_file_info*) { GUARD; return 0; }
static int op_chown(const char*, uid_t, gid_t, fuse_file_info*) { GUARD; return 0; }
static int op_statfs(const char*, struct statvfs* s) {
  GUARD; memset(s, 0, sizeof *s); s->f_bsize = s->f_frsize = 4096; s->f_blocks = s->f_bfree = s->f_bavail = 1 << 22;
  s->f_files = s->f_ffree = 1 << 20; s->f_namemax = 255; return 0;
}
static void* op_init(fuse_conn_info*, fuse_config* cfg) { cfg->kernel_cache = 0; cfg->direct_io = 0; return nullptr; }

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--dump") && i + 1 < argc) dump_dir = argv[++i];
    else if (!strcmp(argv[i], "--load") && i + 1 < argc) load_dir = argv[++i];
    else args.push_back(argv[i]);
  }
  if (dump_dir.empty()) { fprintf(stderr, "usage: powercut_fs MOUNTPOINT --dump DIR [--load DIR] [-f] [-s]\n"); return 2; }
  load();
  fuse_operations ops{};
  ops.getattr = op_getattr; ops.readdir = op_readdir; ops.mkdir = op_mkdir; ops.rmdir = op_rmdir;
  ops.create = op_create; ops.open = op_open; ops.read = op_read; ops.write = op_write; ops.truncate = op_truncate;
  ops.fallocate = op_fallocate; ops.unlink = op_unlink; ops.rename = op_rename; ops.fsync = op_fsync;
  ops.fsyncdir = op_fsyncdir; ops.flush = op_flush; ops.release = op_release; ops.utimens = op_utimens;
  ops.chmod = op_chmod; ops.chown = op_chown; ops.statfs = op_statfs; ops.init = op_init;
  return fuse_main(int(args.size()), args.data(), &ops, nullptr);
}
