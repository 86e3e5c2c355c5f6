// Recovery after a crash: builds that a runner left RUNNING when it died (crash, kill -9,
// power loss) are found on the next start, whatever is left of their processes is killed,
// and they are recorded as LOST. Their numbers stay used.
//
// Safe while other gearrun processes use the same state directory: a build whose runner is
// alive (and is a gearrun) is left alone. Thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "runner/build_record.h"
#include "runner/clock.h"

namespace gearrun::runner {

struct LostBuild {
  BuildRecord record;  // as now written: result LOST, with the reason
  int processes_killed = 0;
  std::string error;  // when something of it could not be killed
};

// "<boot id>/<start time>" of a live process: names one process for good, where a pid
// is reused (after a reboot, or in a container where gearrun is always PID 1). Empty when
// the process does not exist.
[[nodiscard]] std::string ProcessStartId(int pid);

// Looks only at the builds the store lists as running (BuildStore::Running()), so its cost
// does not grow with the number of builds ever run.
[[nodiscard]] std::vector<LostBuild> RecoverLostBuilds(BuildStore& store, Clock& clock);

}  // namespace gearrun::runner
