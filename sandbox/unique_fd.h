// UniqueFd: sole owner of one file descriptor, closed when the owner goes away.
//
// Every fd that gearrun opens is held by exactly one UniqueFd. Move-only; a moved-from
// UniqueFd holds nothing. Not thread-safe: one owner, one thread at a time.
//
//   UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
//   if (!fd) return Error(errno, "open");
//   ::read(fd.get(), buf, n);
#pragma once

#include <string_view>
#include <utility>

namespace gearrun::sandbox {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }
  // Closes the held fd (if any; EINTR from close is not retried, as on Linux the fd is
  // gone either way) and takes ownership of `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Writes all of `bytes` to `fd`, retrying on EINTR and short writes. Returns false (errno
// set) when a write fails. Not for use between fork and exec.
[[nodiscard]] bool WriteAll(int fd, std::string_view bytes);

}  // namespace gearrun::sandbox
