#include "runner/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace gearrun::runner {
namespace {

std::string InUse(const std::filesystem::path& state_dir, const std::string& holder) {
  return "another gearrun" + (holder.empty() ? "" : " (pid " + holder + ")") +
         " is using state directory " + state_dir.string() +
         "; give each runner its own --state-dir";
}

// Takes an flock on `path` (created if needed) and writes our pid into it. On EWOULDBLOCK
// the error names the holder's pid.
tl::expected<sandbox::UniqueFd, std::string> LockFile(const std::filesystem::path& path,
                                                      const std::filesystem::path& state_dir) {
  sandbox::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
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
  return fd;
}

// FNV-1a, 64 bits: stable across builds, for names too long to spell out.
std::uint64_t Fnv1a(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace

std::filesystem::path RuntimeLockPath(const std::filesystem::path& canonical) {
  std::filesystem::path dir;
  if (::geteuid() == 0) {
    dir = "/run/gearrun";
  } else if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg == '/') {
    dir = std::filesystem::path(xdg) / "gearrun";
  } else {
    return {};
  }
  std::string name = "state";
  for (char c : canonical.string()) {
    if (c == '/') {
      name += "%2f";
    } else if (c == '%') {
      name += "%25";
    } else {
      name += c;
    }
  }
  name += ".lock";
  if (name.size() > 200) {
    char hash[40];
    std::snprintf(hash, sizeof(hash), "state-%016llx.lock",
                  static_cast<unsigned long long>(Fnv1a(canonical.string())));
    name = hash;
  }
  return dir / name;
}

tl::expected<StateLock, std::string> StateLock::Acquire(const std::filesystem::path& state_dir) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    return tl::unexpected("cannot create state directory " + state_dir.string() + ": " +
                          ec.message());
  }
  auto canonical = std::filesystem::canonical(state_dir, ec);
  if (ec) return tl::unexpected("cannot resolve " + state_dir.string() + ": " + ec.message());

  // First the lock that survives the directory: a runner whose directory was deleted still
  // holds it.
  std::filesystem::path runtime_path = RuntimeLockPath(canonical);
  sandbox::UniqueFd runtime_fd;
  if (!runtime_path.empty()) {
    // Only this user may write there (0755 under /run for root; XDG_RUNTIME_DIR is 0700).
    if (::mkdir(runtime_path.parent_path().c_str(), 0755) == 0 || errno == EEXIST) {
      auto locked = LockFile(runtime_path, state_dir);
      if (!locked && locked.error().starts_with("another gearrun")) {
        return tl::unexpected(locked.error());
      }
      if (locked) runtime_fd = std::move(*locked);
    }
    if (!runtime_fd) runtime_path.clear();  // a runtime folder we cannot use: the flock alone
  }
  auto fd = LockFile(state_dir / "gearrun.lock", state_dir);
  if (!fd) return tl::unexpected(fd.error());
  return StateLock(state_dir, std::move(*fd), std::move(runtime_path), std::move(runtime_fd));
}

tl::expected<void, std::string> StateLock::Check() const {
  struct stat held {};
  struct stat now {};
  auto path = state_dir_ / "gearrun.lock";
  if (::fstat(fd_.get(), &held) != 0) return {};
  if (::stat(path.c_str(), &now) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) return {};  // cannot tell (EIO, ESTALE, ...)
  } else if (held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
    return {};
  }
  return tl::unexpected("the state directory " + state_dir_.string() +
                        " was deleted or replaced while this gearrun used it");
}

}  // namespace gearrun::runner
