#include "runner/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

namespace gearrun::runner {
namespace {

std::string InUse(const std::filesystem::path& state_dir, const std::string& holder) {
  return "another gearrun" + (holder.empty() ? "" : " (pid " + holder + ")") +
         " is using state directory " + state_dir.string() +
         "; give each runner its own --state-dir";
}

// The abstract socket address for a state directory: "\0gearrun-state-<hash of its path>".
sockaddr_un AbstractAddress(const std::filesystem::path& canonical, socklen_t& length) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  char name[64];
  int n = std::snprintf(name, sizeof(name), "gearrun-state-%016zx",
                        std::hash<std::string>{}(canonical.string()));
  std::memcpy(address.sun_path + 1, name, static_cast<std::size_t>(n));
  length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + static_cast<std::size_t>(n));
  return address;
}

// Who listens on `address`: its pid, or empty when that cannot be learnt.
std::string ListenerPid(const sockaddr_un& address, socklen_t length) {
  sandbox::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    return "";
  }
  ucred cred{};
  socklen_t size = sizeof(cred);
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0 || cred.pid <= 0) {
    return "";
  }
  return std::to_string(cred.pid);
}

}  // namespace

tl::expected<StateLock, std::string> StateLock::Acquire(const std::filesystem::path& state_dir) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    return tl::unexpected("cannot create state directory " + state_dir.string() + ": " +
                          ec.message());
  }
  auto canonical = std::filesystem::canonical(state_dir, ec);
  if (ec) return tl::unexpected("cannot resolve " + state_dir.string() + ": " + ec.message());

  socklen_t length = 0;
  sockaddr_un address = AbstractAddress(canonical, length);
  sandbox::UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket) return tl::unexpected(std::string("socket: ") + std::strerror(errno));
  if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    if (errno == EADDRINUSE) return tl::unexpected(InUse(state_dir, ListenerPid(address, length)));
    return tl::unexpected("cannot lock " + state_dir.string() +
                          " (abstract socket): " + std::strerror(errno));
  }
  if (::listen(socket.get(), 4) != 0) {
    return tl::unexpected(std::string("listen: ") + std::strerror(errno));
  }

  auto path = state_dir / "gearrun.lock";
  sandbox::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return tl::unexpected("cannot open " + path.string() + ": " + std::strerror(errno));
  int rc;
  do {
    rc = ::flock(fd.get(), LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (errno != EWOULDBLOCK) {
      return tl::unexpected("cannot lock " + path.string() + ": " + std::strerror(errno));
    }
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof(buf) - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return tl::unexpected(InUse(state_dir, holder));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return tl::unexpected("cannot write " + path.string() + ": " + std::strerror(errno));
  }
  return StateLock(state_dir, std::move(fd), std::move(socket));
}

tl::expected<void, std::string> StateLock::Check() const {
  struct stat held {};
  struct stat now {};
  auto path = state_dir_ / "gearrun.lock";
  if (::fstat(fd_.get(), &held) == 0 && ::stat(path.c_str(), &now) == 0 &&
      held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
    return {};
  }
  return tl::unexpected("the state directory " + state_dir_.string() +
                        " was deleted or replaced while this gearrun used it");
}

}  // namespace gearrun::runner
