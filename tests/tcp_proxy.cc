// A TCP proxy that breaks the network on command, for tests/kafka_netfault_test.sh:
// it sits between `varve ship` and a Kafka broker (which advertises the
// proxy's port, so every connection of the client goes through it).
//
// Usage: tcp_proxy [LISTEN_PORT]   (0 or nothing: any free port)
// Prints the port it listens on (127.0.0.1) as one line on stdout, then reads
// commands from stdin, one a line:
//   target HOST:PORT   where to forward; connections made before this wait, unread
//   reset              RST every open connection, both sides
//   refuse             stop listening (connect: refused) and RST every connection
//   accept             listen again, on the same port
//   freeze             a silent network: nothing is forwarded, read or accepted
//                      (the kernel still completes handshakes) until `thaw`
//   thaw               forward again
//   drop               every open connection goes silent for good: kept open,
//                      never read or written again (a lost NAT entry, a peer
//                      that vanished without a word); new ones work
// A line "ok COMMAND" on stdout acknowledges each command. EOF on stdin: exit.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr size_t kBuf = 256 * 1024;

struct side {
  int fd = -1;
  std::string out;  // bytes waiting to be written to fd
  bool eof = false;  // fd sent FIN: nothing more to read from it
};

struct conn {
  side client, server;
  bool connecting = false;  // server connect() in progress
  bool dead = false;        // `drop`ped: never forwarded again
};

void nonblock(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void rst_close(int& fd) {
  if (fd < 0) return;
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
  fd = -1;
}

int listen_on(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0) {
    std::fprintf(stderr, "tcp_proxy: listen on 127.0.0.1:%d: %s\n", port, std::strerror(errno));
    std::exit(1);
  }
  nonblock(fd);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  int port = argc > 1 ? std::atoi(argv[1]) : 0;
  int lfd = listen_on(port);
  {
    sockaddr_in a{};
    socklen_t n = sizeof a;
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &n);
    port = ntohs(a.sin_port);
  }
  std::printf("%d\n", port);
  std::fflush(stdout);

  sockaddr_in target{};
  bool have_target = false, frozen = false;
  std::vector<std::unique_ptr<conn>> conns;
  std::string in;  // partial command line
  unsigned long accepted = 0, resets = 0;

  auto start_upstream = [&](conn& c) {
    c.server.fd = ::socket(AF_INET, SOCK_STREAM, 0);
    nonblock(c.server.fd);
    int one = 1;
    ::setsockopt(c.server.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(c.server.fd, reinterpret_cast<sockaddr*>(&target), sizeof target) == 0) return;
    if (errno == EINPROGRESS) {
      c.connecting = true;
      return;
    }
    rst_close(c.server.fd);
    rst_close(c.client.fd);
  };
  auto reset_all = [&] {
    for (auto& c : conns) {
      rst_close(c->client.fd);
      rst_close(c->server.fd);
    }
    resets += conns.size();
    conns.clear();
  };
  auto command = [&](const std::string& line) {
    if (line.rfind("target ", 0) == 0) {
      std::string hp = line.substr(7);
      auto colon = hp.rfind(':');
      target.sin_family = AF_INET;
      target.sin_port = htons(static_cast<uint16_t>(std::atoi(hp.c_str() + colon + 1)));
      if (colon == std::string::npos || ::inet_pton(AF_INET, hp.substr(0, colon).c_str(), &target.sin_addr) != 1) {
        std::fprintf(stderr, "tcp_proxy: bad target \"%s\"\n", hp.c_str());
        return;
      }
      have_target = true;
      for (auto& c : conns)
        if (c->server.fd < 0 && c->client.fd >= 0) start_upstream(*c);
    } else if (line == "reset") {
      reset_all();
    } else if (line == "refuse") {
      if (lfd >= 0) ::close(lfd);
      lfd = -1;
      reset_all();
    } else if (line == "accept") {
      if (lfd < 0) lfd = listen_on(port);
    } else if (line == "freeze") {
      frozen = true;
    } else if (line == "thaw") {
      frozen = false;
    } else if (line == "drop") {
      for (auto& c : conns) c->dead = true;
    } else if (line == "stats") {
      std::fprintf(stderr, "tcp_proxy: %lu accepted, %zu open, %lu reset\n", accepted, conns.size(), resets);
    } else if (!line.empty()) {
      std::fprintf(stderr, "tcp_proxy: unknown command \"%s\"\n", line.c_str());
      return;
    }
    std::printf("ok %s\n", line.c_str());
    std::fflush(stdout);
  };

  std::vector<pollfd> pfds;
  std::vector<std::pair<conn*, bool>> who;  // per pollfd past the first two: (conn, is server side)
  char buf[65536];
  for (;;) {
    pfds.clear();
    who.clear();
    pfds.push_back({STDIN_FILENO, POLLIN, 0});
    pfds.push_back({lfd, static_cast<short>(lfd >= 0 && !frozen ? POLLIN : 0), 0});
    for (auto& c : conns) {
      for (bool srv : {false, true}) {
        side& s = srv ? c->server : c->client;
        side& o = srv ? c->client : c->server;
        if (s.fd < 0) continue;
        short ev = 0;
        if (c->dead) {
          ev = POLLRDHUP;  // only to notice the client giving up
        } else if (!frozen) {
          if (srv && c->connecting) {
            ev = POLLOUT;
          } else if (c->server.fd >= 0 && !c->connecting) {
            if (!s.eof && o.out.size() < kBuf) ev |= POLLIN;
            if (!s.out.empty()) ev |= POLLOUT;
          }
        }
        pfds.push_back({s.fd, ev, 0});
        who.emplace_back(c.get(), srv);
      }
    }
    if (::poll(pfds.data(), pfds.size(), 1000) < 0) {
      if (errno == EINTR) continue;
      std::perror("tcp_proxy: poll");
      return 1;
    }
    if (pfds[0].revents) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) break;  // EOF: the test is done with us
      in.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = in.find('\n')) != std::string::npos;) {
        std::string line = in.substr(0, nl);
        in.erase(0, nl + 1);
        command(line);
      }
      continue;  // the connection list may have changed
    }
    if (lfd >= 0 && (pfds[1].revents & POLLIN)) {
      for (;;) {
        int fd = ::accept(lfd, nullptr, nullptr);
        if (fd < 0) break;
        nonblock(fd);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto c = std::make_unique<conn>();
        c->client.fd = fd;
        ++accepted;
        if (have_target) start_upstream(*c);
        conns.push_back(std::move(c));
      }
    }
    for (size_t i = 2; i < pfds.size(); ++i) {
      const short re = pfds[i].revents;
      if (!re) continue;
      conn& c = *who[i - 2].first;
      const bool srv = who[i - 2].second;
      side& s = srv ? c.server : c.client;
      side& o = srv ? c.client : c.server;
      if (s.fd < 0 || o.fd < 0) continue;  // closed earlier in this round
      if (c.dead) {
        if (re & (POLLRDHUP | POLLHUP | POLLERR)) {
          rst_close(c.client.fd);
          rst_close(c.server.fd);
        }
        continue;
      }
      if (srv && c.connecting) {
        int e = 0;
        socklen_t n = sizeof e;
        ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &e, &n);
        if (e) {  // the broker is down: the client sees a reset
          rst_close(c.client.fd);
          rst_close(c.server.fd);
        } else {
          c.connecting = false;
        }
        continue;
      }
      if (re & POLLIN) {
        ssize_t n = ::read(s.fd, buf, sizeof buf);
        if (n > 0) {
          o.out.append(buf, static_cast<size_t>(n));
        } else if (n == 0) {
          s.eof = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          rst_close(c.client.fd);
          rst_close(c.server.fd);
          continue;
        }
      } else if (re & (POLLHUP | POLLERR)) {
        rst_close(c.client.fd);
        rst_close(c.server.fd);
        continue;
      }
      // Write what the other side sent (now, rather than wait for a round).
      for (side* w : {&o, &s}) {
        if (w->fd < 0 || w->out.empty()) continue;
        ssize_t n = ::write(w->fd, w->out.data(), w->out.size());
        if (n > 0) {
          w->out.erase(0, static_cast<size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          rst_close(c.client.fd);
          rst_close(c.server.fd);
          break;
        }
      }
      // Pass a FIN on once everything before it is written.
      side* sides[2] = {&c.client, &c.server};
      for (int k = 0; k < 2; ++k) {
        side* from = sides[k];
        side* to = sides[1 - k];
        if (from->eof && to->fd >= 0 && to->out.empty()) ::shutdown(to->fd, SHUT_WR);
      }
      if (c.client.eof && c.server.eof && c.client.out.empty() && c.server.out.empty()) {
        ::close(c.client.fd);
        ::close(c.server.fd);
        c.client.fd = c.server.fd = -1;
      }
    }
    // Forget connections closed on both sides.
    std::erase_if(conns, [](const std::unique_ptr<conn>& c) { return c->client.fd < 0 && c->server.fd < 0; });
  }
  reset_all();
  return 0;
}
