#include "runner/recovery.h"

#include <unistd.h>

#include <fstream>

#include "runner/build_service.h"
#include "sandbox/container.h"

namespace gearrun::runner {
namespace {

namespace fs = std::filesystem;

// Whether `pid` is a live gearrun process (a recycled pid of another program is not).
bool RunnerAlive(int pid) {
  if (pid <= 0) return false;
  if (pid == ::getpid()) return true;
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
  std::string argv0;
  if (!std::getline(cmdline, argv0, '\0')) return false;
  return fs::path(argv0).filename().string().find("gearrun") != std::string::npos;
}

}  // namespace

std::vector<LostBuild> RecoverLostBuilds(const BuildStore& store, Clock& clock) {
  std::vector<LostBuild> lost;
  for (const auto& id : store.Running()) {
    auto record = store.Read(id.job, id.number);
    if (!record) continue;
    if (record->result != Result::kRunning) {
      (void)store.Write(*record);  // finished, but a crash came before its marker went
      continue;
    }
    if (RunnerAlive(record->runner_pid)) continue;
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
