#include "runner/clock.h"

#include <poll.h>

#include <cerrno>
#include <climits>

namespace gearrun::runner {

bool SystemClock::SleepUntil(TimePoint deadline, int cancel_fd) {
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Now());
    if (left.count() <= 0) return true;
    int timeout = left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count());
    pollfd p{.fd = cancel_fd, .events = POLLIN, .revents = 0};
    int n = ::poll(&p, cancel_fd >= 0 ? 1 : 0, timeout);
    if (n > 0) return false;
    if (n < 0 && errno != EINTR) return true;  // poll itself failed: do not spin
  }
}

}  // namespace gearrun::runner
