// FakeClock: a Clock for tests of the build logic. Every sleep jumps straight to its deadline
// (or returns at once when the cancel fd is readable) and is recorded; Now() moves only then
// or when the test calls Advance(). Thread-safe.
#pragma once

#include <poll.h>

#include <mutex>
#include <vector>

#include "runner/clock.h"

namespace gearrun::runner {

// Jumps straight to the deadline of every sleep and records how long each was.
class FakeClock final : public Clock {
 public:
  TimePoint Now() override;
  std::chrono::system_clock::time_point WallNow() override;
  bool SleepUntil(TimePoint deadline, int cancel_fd) override;

  void Advance(std::chrono::milliseconds d);
  [[nodiscard]] std::vector<std::chrono::milliseconds> sleeps();

 private:
  std::mutex mu_;
  TimePoint now_{std::chrono::hours(1000)};
  std::vector<std::chrono::milliseconds> sleeps_;
};

inline Clock::TimePoint FakeClock::Now() {
  std::lock_guard lock(mu_);
  return now_;
}

inline std::chrono::system_clock::time_point FakeClock::WallNow() {
  std::lock_guard lock(mu_);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(now_.time_since_epoch()));
}

inline bool FakeClock::SleepUntil(TimePoint deadline, int cancel_fd) {
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

inline void FakeClock::Advance(std::chrono::milliseconds d) {
  std::lock_guard lock(mu_);
  now_ += d;
}

inline std::vector<std::chrono::milliseconds> FakeClock::sleeps() {
  std::lock_guard lock(mu_);
  return sleeps_;
}

}  // namespace gearrun::runner
