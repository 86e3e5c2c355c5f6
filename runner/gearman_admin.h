// The Gearman admin ("text") protocol, as the client commands use it: `status`, `workers`
// and `cancel job` on a server's port, one connection per call, each bounded by a timeout.
//
//   auto functions = AdminStatus({"127.0.0.1", 4730}, std::chrono::seconds(5));
//   if (!functions) Print(functions.error());   // "127.0.0.1:4730: connection refused"
//
// gearmand and gear's geard both answer these; neither forgets a function name, so a
// function whose workers are gone is listed with 0 workers. Thread-safe (no shared state).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "runner/config.h"
#include "sandbox/unique_fd.h"

namespace gearrun::runner {

// A connected, non-blocking TCP socket to `server`, trying each of its addresses, within
// `timeout` in all. Errors are one line ("Connection refused", "no answer in time").
[[nodiscard]] tl::expected<sandbox::UniqueFd, std::string> ConnectWithin(
    const ServerAddress& server, std::chrono::milliseconds timeout);

struct FunctionStatus {
  std::string function;
  int queued = 0;   // waiting plus running
  int running = 0;  // taken by a worker
  int workers = 0;  // connections that registered it
};

struct WorkerConnection {
  std::string address;    // the peer's ip
  std::string client_id;  // "-" when the connection set none
  std::vector<std::string> functions;
};

// Errors are one line naming the server: "gear1:4730: no answer within 5s".
[[nodiscard]] tl::expected<std::vector<FunctionStatus>, std::string> AdminStatus(
    const ServerAddress& server, std::chrono::milliseconds timeout);
[[nodiscard]] tl::expected<std::vector<WorkerConnection>, std::string> AdminWorkers(
    const ServerAddress& server, std::chrono::milliseconds timeout);
// Removes a request that still waits in the server's queue. gearmand answers OK for a
// request it holds (it drops it when a worker next asks for its function, so a second
// cancel is OK too) and an error for a handle it does not know; the error says what the
// server answered.
[[nodiscard]] tl::expected<void, std::string> AdminCancel(const ServerAddress& server,
                                                          std::string_view handle,
                                                          std::chrono::milliseconds timeout);

}  // namespace gearrun::runner
