// `gearrun check`: validates job files and shows what a node would register for them.
//
// Thread-compatible; writes only to the streams it is given.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

namespace gearrun::runner {

// Where `gearrun check` and `gearrun serve` look for job files when none are named.
inline constexpr const char* kDefaultJobsDir = "/etc/gearrun/jobs";

struct CheckOptions {
  std::vector<std::filesystem::path> paths;  // files or directories; empty: kDefaultJobsDir
  std::string node;                          // node name; its own label
  std::vector<std::string> labels;           // the node's other labels
};

// Prints each valid job with the functions it would register on the node (to `out`), and
// every error as "file:line:column: error: message" (to `err`).
// Returns the process exit code: 0 when everything is valid, 1 when anything is not.
int RunCheck(const CheckOptions& options, std::ostream& out, std::ostream& err);

}  // namespace gearrun::runner
