// The end-of-build summary people read: `gearrun run` prints it from the build's record,
// `gearrun submit` from the final payload a node sent back.
//
//   hello #1: SUCCESS (114ms)
//     greet               SUCCESS  exit 0      1 attempt  42ms
//     show the workspace  SUCCESS  exit 0      1 attempt  65ms
//
// Pure; thread-safe.
#pragma once

#include <ostream>

#include "runner/build_record.h"

namespace gearrun::runner {

void PrintSummary(const BuildRecord& record, std::ostream& out);

}  // namespace gearrun::runner
