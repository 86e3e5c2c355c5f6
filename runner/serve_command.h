// `gearrun serve`: the daemon. Loads and checks the node configuration and the job files,
// takes the state directory's lock, ends what a crashed predecessor left running, then
// serves builds to Gearman (runner/worker.h) until SIGTERM/SIGINT (drain) or, with --once,
// until its one build has ended.
//
// Signals: SIGHUP reloads the job files; the first SIGTERM/SIGINT drains (no new builds,
// running ones finish, up to --drain-timeout); the second aborts running builds through
// their kill ladder (finally steps run, results are sent), then exits.
//
// Exit codes: 0 drained and stopped, or --once and the build succeeded; 1 --once and the
// build did not succeed (or could not start); 2 invalid configuration or job files, or the
// state directory is in use (nothing started).
#pragma once

#include <ostream>

#include "runner/config.h"

namespace gearrun::runner {

int RunServe(const ServeFlags& flags, std::ostream& out, std::ostream& err);

}  // namespace gearrun::runner
