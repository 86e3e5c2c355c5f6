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

Clock::TimePoint FakeClock::Now() {
  std::lock_guard lock(mu_);
  return now_;
}

std::chrono::system_clock::time_point FakeClock::WallNow() {
  std::lock_guard lock(mu_);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(now_.time_since_epoch()));
}

bool FakeClock::SleepUntil(TimePoint deadline, int cancel_fd) {
  if (cancel_fd >= 0) {
    pollfd p{.fd = cancel_fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 0) > 0) return false;
  }
  std::lock_guard lock(mu_);
  if (deadline > now_) {
    sleeps_.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now_));
    now_ = deadline;
  } else {
    sleeps_.emplace_back(0);
  }
  return true;
}

void FakeClock::Advance(std::chrono::milliseconds d) {
  std::lock_guard lock(mu_);
  now_ += d;
}

std::vector<std::chrono::milliseconds> FakeClock::sleeps() {
  std::lock_guard lock(mu_);
  return sleeps_;
}

}  // namespace gearrun::runner
