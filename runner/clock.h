// Clock: the seam between build logic and time, so that retries, delays and timeouts can be
// tested without sleeping.
//
//   SystemClock clock;
//   auto deadline = clock.Now() + std::chrono::seconds(5);
//   if (!clock.SleepUntil(deadline, cancel_fd)) { /* cancelled */ }
//
// SystemClock is thread-safe. Tests use a FakeClock (tests/runner/fake_clock.h).
#pragma once

#include <chrono>

namespace gearrun::runner {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;

  [[nodiscard]] virtual TimePoint Now() = 0;
  // Wall-clock time, for records and log lines.
  [[nodiscard]] virtual std::chrono::system_clock::time_point WallNow() = 0;
  // Waits until `deadline` or until `cancel_fd` (-1: none) becomes readable. Returns false
  // when woken by the fd.
  virtual bool SleepUntil(TimePoint deadline, int cancel_fd) = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point WallNow() override {
    return std::chrono::system_clock::now();
  }
  bool SleepUntil(TimePoint deadline, int cancel_fd) override;
};

}  // namespace gearrun::runner
