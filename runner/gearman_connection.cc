#include "runner/gearman_connection.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace gearrun::runner {
namespace {

constexpr std::chrono::seconds kConnectTimeout{10};

std::string ErrnoText(const std::string& what, int err) { return what + ": " + std::strerror(err); }

void SetKeepalive(int fd) {
  int on = 1, idle = 30, interval = 10, probes = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
  // Keepalive probes only an idle connection; a request the server never acknowledges (a
  // partition, a frozen host) is given up after a minute instead of the kernel's ~15.
  unsigned int user_timeout_ms = 60'000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
  // Small packets (WORK_STATUS, GRAB) should leave at once.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

}  // namespace

std::chrono::milliseconds ReconnectDelay(int failures, double jitter_factor) {
  std::int64_t ms = 1000;
  for (int i = 1; i < failures && ms < 30'000; ++i) ms *= 2;
  ms = std::min<std::int64_t>(ms, 30'000);
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(static_cast<double>(ms) * jitter_factor));
}

GearmanConnection::GearmanConnection(ServerAddress server, std::string client_id)
    : server_(std::move(server)),
      client_id_(std::move(client_id)),
      jitter_(static_cast<std::minstd_rand::result_type>(
          std::hash<std::string>{}(client_id_ + server_.ToString()) ^
          static_cast<std::size_t>(::getpid()))) {}

bool GearmanConnection::MaybeConnect(TimePoint now) {
  if (state_ != State::kDown || now < next_attempt_) return false;

  // Resolved at each attempt (a server's address may change), and every address is tried
  // in turn: "localhost" may give ::1 first while the server listens on 127.0.0.1 only.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(server_.port);
  int rc = ::getaddrinfo(server_.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    Drop(std::string("cannot resolve ") + server_.host + ": " + ::gai_strerror(rc), now);
    return true;
  }
  addresses_.clear();
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    sockaddr_storage address{};
    std::memcpy(&address, a->ai_addr, a->ai_addrlen);
    addresses_.push_back({address, a->ai_addrlen});
  }
  ::freeaddrinfo(found);
  next_address_ = 0;
  ConnectNext(now);
  return true;
}

void GearmanConnection::ConnectNext(TimePoint now) {
  std::string error = "no address";
  while (next_address_ < addresses_.size()) {
    const auto& [address, length] = addresses_[next_address_++];
    sandbox::UniqueFd fd(
        ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      error = ErrnoText("socket", errno);
      continue;
    }
    SetKeepalive(fd.get());
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0 &&
        errno != EINPROGRESS) {
      error = ErrnoText("connect", errno);
      continue;
    }
    // Even a connect that completed at once is reported through poll (POLLOUT), so that
    // the event loop sees every connection come up the same way.
    fd_ = std::move(fd);
    state_ = State::kConnecting;
    connect_deadline_ = now + kConnectTimeout;
    return;
  }
  Drop(error, now);
}

short GearmanConnection::PollEvents() const {
  switch (state_) {
    case State::kDown:
      return 0;
    case State::kConnecting:
      return POLLOUT;
    case State::kUp:
      return static_cast<short>(POLLIN | (output_.empty() ? 0 : POLLOUT));
  }
  return 0;
}

GearmanConnection::Ready GearmanConnection::OnReady(short revents, TimePoint now) {
  Ready ready;
  if (state_ == State::kConnecting) {
    if (revents == 0) {
      if (now >= connect_deadline_) {
        fd_.reset();
        ConnectNext(now);
        if (state_ == State::kDown) {
          ready.error =
              "connect: no answer within " + std::to_string(kConnectTimeout.count()) + "s";
        }
      }
      return ready;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      fd_.reset();
      ConnectNext(now);  // the next address, if any; else down with a backoff
      if (state_ == State::kDown) ready.error = ErrnoText("connect", err);
      return ready;
    }
    OnConnected();
    ready.connected = true;
    return ready;
  }
  if (state_ != State::kUp) return ready;

  if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    // Packets are taken out after every read, so that the decoder learns of an oversized
    // request at its first bytes and drops the rest as it comes, instead of buffering it.
    // Packets that arrived before a close still count (a JOB_ASSIGN must be answered if it
    // can be; the caller sees the error after them).
    auto decode = [&] {
      for (;;) {
        auto next = decoder_.Next();
        if (!next) {
          ready.error = "protocol error: " + next.error();
          return;
        }
        if (!next->has_value()) return;
        // The server speaks: only now does the backoff start again from 1 s (a peer that
        // accepts and closes at once must not get a reconnect every second).
        failures_ = 0;
        ready.packets.push_back(std::move(**next));
      }
    };
    // At most this much per call, so that a server streaming a huge packet cannot keep the
    // loop from the other connections (poll reports the rest at once).
    constexpr std::size_t kMaxReadPerCall = 1u << 20;
    char buf[65536];
    for (std::size_t read = 0;;) {
      ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        last_received_ = now;
        read += static_cast<std::size_t>(n);
        decoder_.Feed(std::string_view(buf, static_cast<std::size_t>(n)));
        decode();
        if (!ready.error.empty() || static_cast<std::size_t>(n) < sizeof(buf) ||
            read >= kMaxReadPerCall) {
          break;
        }
        continue;
      }
      if (n == 0) {
        ready.error = "the server closed the connection";
      } else if (errno == EINTR) {
        continue;
      } else if (errno != EAGAIN) {  // EWOULDBLOCK is the same on Linux
        ready.error = ErrnoText("recv", errno);
      }
      break;
    }
  }
  if (ready.error.empty() && (revents & POLLOUT) != 0) Flush();
  if (ready.error.empty() && state_ == State::kUp && (revents & POLLERR) != 0 &&
      (revents & POLLIN) == 0) {
    ready.error = "socket error";
  }
  if (!ready.error.empty()) Drop(ready.error, now);
  return ready;
}

void GearmanConnection::OnConnected() {
  state_ = State::kUp;
  up_since_ = std::chrono::steady_clock::now();
  ++generation_;
  last_error_.clear();
  decoder_ = PacketDecoder(Magic::kResponse);
  output_.clear();
  registered_.clear();
  Send(Command::kSetClientId, {client_id_});
  Send(Command::kResetAbilities);
  for (const auto& f : wanted_) {
    Send(Command::kCanDo, {f});
    registered_.insert(f);
  }
}

void GearmanConnection::SetFunctions(const std::set<std::string>& functions) {
  wanted_ = functions;
  if (state_ != State::kUp) return;
  if (wanted_.empty()) {
    if (!registered_.empty()) Send(Command::kResetAbilities);
    registered_.clear();
    return;
  }
  // CANT_DO only for names this connection registered: geard drops a connection that
  // unregisters a name it never saw.
  std::vector<std::string> removed;
  std::set_difference(registered_.begin(), registered_.end(), wanted_.begin(), wanted_.end(),
                      std::back_inserter(removed));
  for (const auto& f : removed) {
    Send(Command::kCantDo, {f});
    registered_.erase(f);
  }
  for (const auto& f : wanted_) {
    if (registered_.insert(f).second) Send(Command::kCanDo, {f});
  }
}

void GearmanConnection::Send(Command command, std::vector<std::string> args) {
  if (state_ != State::kUp) return;
  output_ += Encode({.magic = Magic::kRequest, .command = command, .args = std::move(args)});
  Flush();
}

void GearmanConnection::Flush() {
  while (!output_.empty() && fd_) {
    ssize_t n = ::send(fd_.get(), output_.data(), output_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      output_.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // EAGAIN: the rest waits for POLLOUT. Other errors show up as POLLERR/POLLHUP.
    break;
  }
}

void GearmanConnection::Drop(std::string reason, TimePoint now, DropKind kind) {
  // A connection that lasted counts as a success even if the server never spoke (an idle
  // executor connection), unless it is dropped because the server did not answer.
  if (kind == DropKind::kLost && state_ == State::kUp &&
      now - up_since_ > std::chrono::seconds(10)) {
    failures_ = 0;
  }
  Close();
  last_error_ = std::move(reason);
  ++failures_;
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  next_attempt_ = now + ReconnectDelay(failures_, jitter(jitter_));
}

void GearmanConnection::Close() {
  fd_.reset();
  state_ = State::kDown;
  output_.clear();
  registered_.clear();
}

}  // namespace gearrun::runner
