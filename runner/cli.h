// The `gearrun` command line: parses arguments and runs a subcommand.
//
// Exit codes shared by every subcommand: 0 success, 1 the checked or built thing failed,
// 2 usage or configuration error. Subcommands document any further codes.
#pragma once

#include <ostream>

namespace gearrun::runner {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// Runs `gearrun` with these arguments; returns the process exit code.
int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace gearrun::runner
