// A scripted StepExecutor for tests of the build logic: each attempt takes the next
// scripted result, "takes" its duration on the FakeClock, and honours the attempt's
// deadline and the cancel token as the real sandbox does.
#pragma once

#include <poll.h>

#include <deque>
#include <functional>
#include <limits>

#include "runner/clock.h"
#include "runner/step_executor.h"
#include "tests/runner/fake_clock.h"

namespace gearrun::runner {

struct Scripted {
  int exit_code = 0;
  int signal = 0;
  std::chrono::milliseconds duration{10};  // kForever: runs until deadline or cancel
  std::string output;
  std::function<void()> during;  // called while the attempt "runs" (e.g. to stop the build)
  bool fail_to_start = false;
};

inline constexpr std::chrono::milliseconds kForever{std::numeric_limits<int32_t>::max()};

class FakeExecutor final : public StepExecutor {
 public:
  explicit FakeExecutor(FakeClock& clock) : clock_(clock) {}

  void Script(Scripted s) { script_.push_back(std::move(s)); }

  tl::expected<sandbox::Outcome, std::string> Run(const Attempt& attempt,
                                                  sandbox::OutputSink& output,
                                                  const sandbox::CancelToken& cancel) override {
    attempts.push_back(attempt);
    Scripted s = script_.empty() ? Scripted{} : script_.front();
    if (!script_.empty()) script_.pop_front();
    if (s.fail_to_start) return tl::unexpected(std::string("no such program: nosuch"));
    output.Write(s.output);
    if (s.during) s.during();
    sandbox::Outcome o;
    auto start = clock_.Now();
    if (cancel.cancelled()) {
      o.ending = sandbox::Outcome::Ending::kCancelled;
      o.signal = SIGTERM;
      return o;
    }
    auto end = start + s.duration;
    if (attempt.deadline && *attempt.deadline < end) {
      clock_.Advance(
          std::chrono::duration_cast<std::chrono::milliseconds>(*attempt.deadline - start));
      o.ending = sandbox::Outcome::Ending::kTimedOut;
      o.signal = attempt.kill.signal;
      o.leftovers_killed = 1;
      return o;
    }
    if (s.duration == kForever) {
      ADD_FAILURE() << "a step scripted to run forever had no deadline";
      return tl::unexpected(std::string("forever"));
    }
    clock_.Advance(s.duration);
    o.duration = s.duration;
    if (s.signal != 0) {
      o.ending = sandbox::Outcome::Ending::kSignaled;
      o.signal = s.signal;
    } else {
      o.exit_code = s.exit_code;
    }
    return o;
  }

  tl::expected<int, std::string> KillAll(const sandbox::KillPolicy& policy,
                                         sandbox::OutputSink& /*output*/) override {
    kill_policies.push_back(policy);
    return leftovers;
  }
  std::string containment() const override { return "fake"; }

  std::vector<Attempt> attempts;
  std::vector<sandbox::KillPolicy> kill_policies;
  int leftovers = 0;

 private:
  FakeClock& clock_;
  std::deque<Scripted> script_;
};

}  // namespace gearrun::runner
