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
  fs::path builds = store.BuildDir("x", 1).parent_path().parent_path();
  std::error_code ec;
  for (fs::directory_iterator job(builds, ec), end; !ec && job != end; job.increment(ec)) {
    std::error_code inner;
    for (fs::directory_iterator b(job->path(), inner); !inner && b != end; b.increment(inner)) {
      std::string name = b->path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      auto record = store.Read(job->path().filename().string(), std::stoll(name));
      if (!record || record->result != Result::kRunning || RunnerAlive(record->runner_pid)) {
        continue;
      }
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
  }
  return lost;
}

}  // namespace gearrun::runner
