#include "sandbox/cancel.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace gearrun::sandbox {

tl::expected<CancelToken, Error> CancelToken::Create() {
  // Non-blocking so that Cancel() can never block, even after 2^64-2 calls.
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) {
    int err = errno;
    return Fail(err, "cannot create the eventfd of a cancel token");
  }
  return CancelToken(std::move(fd));
}

void CancelToken::Cancel() const noexcept {
  int saved_errno = errno;  // a signal handler must not change errno under the code it interrupted
  std::uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(fd_.get(), &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  // EAGAIN means the counter is saturated: the token is cancelled already.
  errno = saved_errno;
}

bool CancelToken::cancelled() const noexcept {
  pollfd p{fd_.get(), POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n > 0 && (p.revents & POLLIN) != 0;
}

}  // namespace gearrun::sandbox
