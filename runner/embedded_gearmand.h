// The embedded default: when `gearrun serve` has no server configured and nothing listens
// on 127.0.0.1:4730, it runs gearmand there itself, as its child, for as long as it runs.
// A single machine is then a whole build farm; pointing --server at shared servers later
// changes nothing else.
//
//   if (!Listening(kDefaultServer, 1s)) {
//     auto gearmand = EmbeddedGearmand::Start(state_dir / "gearmand.log");
//     if (!gearmand) Fail(gearmand.error());      // says how to install it
//   }                                             // ~EmbeddedGearmand stops it
//
// gearmand runs in a sandbox Container of its own (kill ladder: SIGTERM, 5 s, SIGKILL),
// watched by a thread of this object. Not copyable; destroy it after the last result went
// out.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <tl/expected.hpp>

#include "runner/config.h"
#include "sandbox/cancel.h"
#include "sandbox/container.h"

namespace gearrun::runner {

inline const ServerAddress kDefaultServer{.host = "127.0.0.1", .port = 4730};

// Whether something accepts TCP connections at `server` within `timeout`.
[[nodiscard]] bool Listening(const ServerAddress& server, std::chrono::milliseconds timeout);

class EmbeddedGearmand {
 public:
  // Starts gearmand on kDefaultServer, logging to `log_file`, and waits (up to 10 s) until
  // it accepts connections. Errors: gearmand is not installed (the message says how to
  // install it or how to use another server), or it did not come up (why, when known).
  [[nodiscard]] static tl::expected<std::unique_ptr<EmbeddedGearmand>, std::string> Start(
      const std::filesystem::path& log_file);
  ~EmbeddedGearmand();
  EmbeddedGearmand(const EmbeddedGearmand&) = delete;
  EmbeddedGearmand& operator=(const EmbeddedGearmand&) = delete;

  [[nodiscard]] const std::string& program() const { return program_; }

 private:
  EmbeddedGearmand(sandbox::Container container, sandbox::CancelToken cancel, std::string program);

  sandbox::Container container_;
  sandbox::CancelToken cancel_;
  std::string program_;
  std::atomic<bool> exited_{false};
  std::string exit_reason_;  // written by the thread before exited_
  std::thread thread_;
};

}  // namespace gearrun::runner
