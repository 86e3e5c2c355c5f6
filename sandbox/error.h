// Error: an infrastructure failure of the sandbox (spawn, pipe, cgroup, /proc, bad input),
// said so that an operator can act on it.
//
// A failing command is not an Error: it is an Outcome (see sandbox/process.h). An Error
// means the sandbox could not do what was asked, e.g. the program does not exist, the
// working directory is missing, a cgroup could not be created.
//
// A plain value type; thread-compatible.
#pragma once

#include <cerrno>
#include <string>
#include <tl/expected.hpp>
#include <utility>

namespace gearrun::sandbox {

struct Error {
  int code = 0;         // the errno value that caused it, or 0 when no system call failed
  std::string message;  // what failed, on what, and (where known) what to do about it

  // "message (strerror(code))", or just the message when code is 0.
  [[nodiscard]] std::string ToString() const;
};

// Error{code, message} wrapped for returning from a function that returns tl::expected.
// Read errno into a local first: the evaluation order of arguments is unspecified, and
// building the message may clobber errno.
//
//   if (::mkdir(path, 0755) != 0) {
//     int err = errno;
//     return Fail(err, "cannot create " + path);
//   }
[[nodiscard]] inline tl::unexpected<Error> Fail(int code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace gearrun::sandbox
