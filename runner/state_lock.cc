#include "runner/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace gearrun::runner {

tl::expected<StateLock, std::string> StateLock::Acquire(const std::filesystem::path& state_dir) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    return tl::unexpected("cannot create state directory " + state_dir.string() + ": " +
                          ec.message());
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
    return tl::unexpected("another gearrun" + (holder.empty() ? "" : " (pid " + holder + ")") +
                          " is using state directory " + state_dir.string() +
                          "; give each runner its own --state-dir");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return tl::unexpected("cannot write " + path.string() + ": " + std::strerror(errno));
  }
  return StateLock(std::move(fd));
}

}  // namespace gearrun::runner
