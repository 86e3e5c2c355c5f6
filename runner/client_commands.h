// The client commands: what an operator or a script runs against a cluster of gearrun
// nodes, without writing a Gearman client (docs/clients.md).
//
//   gearrun submit JOB [-p K=V]... [--label L] [--unique ID] [--background]
//                      [--priority high|normal|low] [--timeout DUR] [--json] [--queue-anyway]
//   gearrun stop NODE JOB NUMBER
//   gearrun describe NODE JOB NUMBER TEXT
//   gearrun status [--json]
//   gearrun cancel HANDLE
//
// Servers: --server HOST[:PORT] (repeatable), else $GEARRUN_SERVERS (comma or space
// separated), else 127.0.0.1:4730. A server that does not answer is an error within 10 s;
// nothing waits forever except a foreground build without --timeout, and that ends too
// when its server goes away.
//
// Exit codes: 0 done (submit: SUCCESS); 1 submit: FAILURE or UNSTABLE, stop/describe: the
// node refused (not running, not found); 2 usage, or a function no server knows;
// 3 submit: ABORTED; 4 the request failed (no server answered, WORK_FAIL, an exception,
// a timeout).
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace gearrun::runner {

inline constexpr int kExitRequestFailed = 4;
inline constexpr std::string_view kServersVariable = "GEARRUN_SERVERS";

struct ClientFlags {
  std::vector<std::string> servers;
};

struct SubmitOptions {
  ClientFlags client;
  std::string job;
  std::vector<std::string> parameters;  // "KEY=VALUE"
  std::optional<std::string> label;
  std::optional<std::string> unique;
  bool background = false;
  std::string priority = "normal";
  std::optional<std::string> timeout;
  bool json = false;
  bool queue_anyway = false;
};
int RunSubmit(const SubmitOptions& options, std::ostream& out, std::ostream& err);

struct BuildCommandOptions {
  ClientFlags client;
  std::string node;
  std::string job;
  std::string number;
  std::string text;  // describe only
};
int RunStop(const BuildCommandOptions& options, std::ostream& out, std::ostream& err);
int RunDescribe(const BuildCommandOptions& options, std::ostream& out, std::ostream& err);

struct StatusOptions {
  ClientFlags client;
  bool json = false;
};
int RunStatus(const StatusOptions& options, std::ostream& out, std::ostream& err);

struct CancelOptions {
  ClientFlags client;
  std::string handle;
};
int RunCancel(const CancelOptions& options, std::ostream& out, std::ostream& err);

}  // namespace gearrun::runner
