#include "runner/summary.h"

#include <algorithm>
#include <iomanip>

#include "jobs/job_spec.h"
#include "runner/build.h"

namespace gearrun::runner {

void PrintSummary(const BuildRecord& r, std::ostream& out) {
  out << "\n" << r.job << " #" << r.number << ": " << ToString(r.result);
  if (!r.reason.empty()) out << " - " << r.reason;
  out << " (" << HumanDuration(std::chrono::milliseconds(r.duration_ms)) << ")\n";
  size_t width = 4;
  for (const auto& s : r.steps) width = std::max(width, s.name.size() + (s.is_finally ? 10 : 0));
  for (const auto& s : r.steps) {
    std::string name = (s.is_finally ? "(finally) " : "") + s.name;
    out << "  " << std::left << std::setw(static_cast<int>(width)) << name << "  " << std::setw(9)
        << ToString(s.result);
    if (s.result != StepResult::kNotRun) {
      std::string how = s.signal != 0      ? "signal " + jobs::SignalName(s.signal)
                        : s.exit_code >= 0 ? "exit " + std::to_string(s.exit_code)
                                           : "not started";
      if (s.timed_out) how = "timed out";
      out << std::setw(12) << how << std::setw(11)
          << (std::to_string(s.attempts) + (s.attempts == 1 ? " attempt" : " attempts"))
          << HumanDuration(std::chrono::milliseconds(s.duration_ms));
    }
    out << "\n";
  }
}

}  // namespace gearrun::runner
