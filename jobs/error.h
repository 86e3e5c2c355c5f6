// Error: what went wrong with a job definition or a build request, said so that a user can
// act on it. Where the problem is in a file, the error names the file, line and column.
//
// A plain value type; thread-compatible.
#pragma once

#include <string>

namespace gearrun::jobs {

enum class ErrorCode {
  kIo,          // a file or directory could not be read
  kSyntax,      // not valid YAML
  kInvalid,     // valid YAML, but not a valid job definition
  kDuplicate,   // the same job name defined twice
  kLimit,       // over a limit that keeps loading bounded (size, documents, depth, aliases)
  kBadRequest,  // a build request that cannot be run as sent
};

struct Error {
  ErrorCode code = ErrorCode::kInvalid;
  std::string message;  // what is wrong and what was expected
  std::string file;     // empty when the error is not about a file
  int line = 0;         // 1-based; 0 when unknown
  int column = 0;       // 1-based; 0 when unknown

  // "file:line:column: message", leaving out what is unknown.
  [[nodiscard]] std::string ToString() const;
};

}  // namespace gearrun::jobs
