#include "runner/recovery.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "runner/build_service.h"
#include "sandbox/container.h"

namespace gearrun::runner {
namespace {

namespace fs = std::filesystem;

// Whether `pid` is a live gearrun process (a recycled pid of another program is not).
// Whether the runner of a build is still running it: its pid is alive, is a gearrun, and
// (for records that say so) is the very process that started the build.
bool RunnerAlive(int pid, const std::string& start) {
  if (pid <= 0) return false;
  if (!start.empty() && ProcessStartId(pid) != start) return false;
  if (pid == ::getpid()) return !start.empty();  // old records: only its own start says
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
  std::string argv0;
  if (!std::getline(cmdline, argv0, '\0')) return false;
  return fs::path(argv0).filename().string().find("gearrun") != std::string::npos;
}

}  // namespace

std::string ProcessStartId(int pid) {
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(stat_file, stat)) return {};
  // Field 22, starttime; the command name (field 2) may hold spaces: count after its ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) return boot + "/" + field;
  }
  return {};
}

std::vector<LostBuild> RecoverLostBuilds(BuildStore& store, Clock& clock) {
  std::vector<LostBuild> lost;
  for (const auto& id : store.Running()) {
    auto record = store.Read(id.job, id.number);
    if (!record) continue;
    if (record->result != Result::kRunning) {
      (void)store.Write(*record);  // finished, but a crash came before its marker went
      continue;
    }
    if (RunnerAlive(record->runner_pid, record->runner_start)) continue;
    LostBuild item;
    auto killed = sandbox::KillOrphanedBuild(record->cookie, record->cgroup);
    if (killed) {
      item.processes_killed = *killed;
    } else {
      item.error = killed.error().ToString();
    }
    record->result = Result::kLost;
    record->reason = "the runner (pid " + std::to_string(record->runner_pid) +
                     ") stopped while the build ran; " + std::to_string(item.processes_killed) +
                     " of its processes were still running and were killed";
    record->finished_at = FormatTimestamp(clock.WallNow());
    (void)store.Write(*record);
    item.record = std::move(*record);
    lost.push_back(std::move(item));
  }
  return lost;
}

}  // namespace gearrun::runner
