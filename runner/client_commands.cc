#include "runner/client_commands.h"

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>

#include "jobs/duration.h"
#include "jobs/labels.h"
#include "jobs/suggest.h"
#include "runner/cli.h"
#include "runner/config.h"
#include "runner/gearman_admin.h"
#include "runner/gearman_client.h"
#include "runner/payload.h"
#include "runner/run_command.h"
#include "runner/summary.h"

namespace gearrun::runner {
namespace {

using Json = nlohmann::ordered_json;

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// --server flags, else $GEARRUN_SERVERS, else 127.0.0.1:4730.
std::optional<std::vector<ServerAddress>> ResolveServers(const ClientFlags& flags,
                                                         const std::string& command,
                                                         std::ostream& err) {
  std::vector<std::string> texts;
  std::string source = "--server";
  for (const auto& f : flags.servers) {
    for (auto& t : jobs::SplitLabelList(f)) texts.push_back(t);
  }
  if (texts.empty()) {
    if (const char* env = std::getenv(std::string(kServersVariable).c_str())) {
      texts = jobs::SplitLabelList(env);
      source = std::string(kServersVariable);
    }
  }
  if (texts.empty()) return std::vector<ServerAddress>{{.host = "127.0.0.1", .port = 4730}};
  std::vector<ServerAddress> servers;
  for (const auto& t : texts) {
    auto parsed = ParseServerAddress(t);
    if (!parsed) {
      err << "gearrun " << command << ": " << source << ": " << parsed.error() << "\n";
      return std::nullopt;
    }
    servers.push_back(*parsed);
  }
  return servers;
}

// Function name -> workers, summed over the servers that answered. Errors of the others
// go to `errors`.
std::map<std::string, int> KnownFunctions(const std::vector<ServerAddress>& servers,
                                          std::vector<std::string>& errors) {
  std::map<std::string, int> known;
  for (const auto& s : servers) {
    auto status = AdminStatus(s, kServerAnswerTimeout);
    if (!status) {
      errors.push_back(status.error());
      continue;
    }
    for (const auto& f : *status) known[f.function] += f.workers;
  }
  return known;
}

// Functions worth suggesting for a misspelt or unknown `function`.
std::vector<std::string> Similar(const std::string& function, const std::string& job,
                                 const std::map<std::string, int>& known) {
  std::vector<std::string_view> names;
  for (const auto& [name, workers] : known) names.push_back(name);
  std::vector<std::string> out;
  if (auto closest = jobs::ClosestWord(function, names); !closest.empty()) {
    out.emplace_back(closest);
  }
  for (const auto& [name, workers] : known) {
    if (out.size() >= 10) break;
    if (name.find(job) != std::string::npos && name != function &&
        std::find(out.begin(), out.end(), name) == out.end()) {
      out.push_back(name);
    }
  }
  return out;
}

// Says why `function` cannot be sent; returns an exit code, or nullopt when it can.
std::optional<int> CheckRegistered(const std::vector<ServerAddress>& servers,
                                   const std::string& function, const std::string& job,
                                   const std::string& command, std::ostream& err) {
  std::vector<std::string> errors;
  auto known = KnownFunctions(servers, errors);
  if (errors.size() == servers.size()) {
    err << "gearrun " << command << ": no Gearman server answered:\n";
    for (const auto& e : errors) err << "  " << e << "\n";
    err << "Start one (gearrun serve starts gearmand itself when none is configured), or point "
           "at yours with --server HOST:PORT or "
        << kServersVariable << ".\n";
    return kExitRequestFailed;
  }
  for (const auto& e : errors) err << "gearrun " << command << ": warning: " << e << "\n";
  auto it = known.find(function);
  if (it == known.end()) {
    err << "gearrun " << command << ": no server knows " << function
        << " (no node has registered it)";
    auto similar = Similar(function, job, known);
    if (!similar.empty()) {
      err << "; known functions like it:";
      for (const auto& s : similar) err << " " << s;
    }
    err << "\n";
    if (command == "submit") err << "Use --queue-anyway to queue it all the same.\n";
    return kExitUsage;
  }
  if (it->second == 0) {
    err << "gearrun " << command << ": note: no node serves " << function
        << " right now; the request waits in the queue until one does\n";
  }
  return std::nullopt;
}

class SubmitPrinter : public RequestObserver {
 public:
  SubmitPrinter(std::ostream& out, bool quiet) : out_(out), quiet_(quiet) {}
  void Created(const std::string& handle) override {
    if (!quiet_) out_ << "queued as " << handle << "\n" << std::flush;
  }
  void Data(const std::string& data) override {
    auto j = Json::parse(data, nullptr, false);
    if (quiet_ || started_ || !j.is_object()) return;
    started_ = true;
    out_ << "started: " << j.value("name", "?") << " #" << j.value("number", 0) << " on node "
         << j.value("node_name", "?") << " (" << j.value("worker", "?") << ")\n"
         << std::flush;
  }
  void Status(std::uint32_t numerator, std::uint32_t denominator) override {
    if (quiet_ || numerator == 0) return;
    out_ << "  " << numerator << " of " << denominator << " steps done\n" << std::flush;
  }

 private:
  std::ostream& out_;
  bool quiet_;
  bool started_ = false;
};

bool ParseNumber(const std::string& text, std::int64_t& number) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  number = std::stoll(text);
  return number > 0;
}

enum class BuildCommand { kStop, kDescribe };

// Sends stop: or set_description: and reports; shared by RunStop and RunDescribe.
int RunBuildCommand(const BuildCommandOptions& o, BuildCommand which, std::ostream& out,
                    std::ostream& err) {
  const bool is_stop = which == BuildCommand::kStop;
  const std::string command = is_stop ? "stop" : "describe";
  std::int64_t number = 0;
  if (!ParseNumber(o.number, number)) {
    err << "gearrun " << command << ": NUMBER must be a build number (1, 2, ...), got '" << o.number
        << "'\n";
    return kExitUsage;
  }
  const std::string function = (is_stop ? "stop:" : "set_description:") + o.node;
  Json workload{{"name", o.job}, {"number", number}};
  if (!is_stop) workload["html_description"] = o.text;
  auto servers = ResolveServers(o.client, command, err);
  if (!servers) return kExitUsage;
  if (auto refused = CheckRegistered(*servers, function, o.node, command, err)) {
    if (*refused == kExitUsage) err << "Is node " << o.node << " running gearrun serve?\n";
    return *refused;
  }
  GearmanClient::Request request{.function = function,
                                 .workload = Dump(workload),
                                 .timeout = std::chrono::milliseconds(kServerAnswerTimeout) * 3};
  auto result = GearmanClient::Submit(*servers, request, nullptr);
  std::string build = o.job + " #" + o.number + " on " + o.node;
  if (!result) {
    err << "gearrun " << command << ": " << result.error() << "\n";
    return kExitRequestFailed;
  }
  switch (result->reply) {
    case GearmanClient::Reply::kComplete:
      if (is_stop) {
        out << "stopping " << build << ": its kill ladder runs, then its finally steps\n";
      } else {
        out << (result->data.empty() ? "description set for " + build : result->data) << "\n";
      }
      return kExitOk;
    case GearmanClient::Reply::kException:
      err << "gearrun " << command << ": " << result->data << "\n";
      return kExitFailed;
    case GearmanClient::Reply::kFail:
      err << "gearrun " << command << ": "
          << (is_stop ? build + " is not running (it has finished or is stopping)"
                      : "the node refused it")
          << "\n";
      return kExitFailed;
  }
  return kExitFailed;
}

}  // namespace

int RunSubmit(const SubmitOptions& o, std::ostream& out, std::ostream& err) {
  auto servers = ResolveServers(o.client, "submit", err);
  if (!servers) return kExitUsage;
  Json workload = Json::object();
  for (const auto& p : o.parameters) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      err << "gearrun submit: -p takes KEY=VALUE (a name, '=', then the value)\n";
      return kExitUsage;
    }
    workload[p.substr(0, eq)] = p.substr(eq + 1);
  }
  Priority priority = Priority::kNormal;
  if (o.priority == "high") {
    priority = Priority::kHigh;
  } else if (o.priority == "low") {
    priority = Priority::kLow;
  } else if (o.priority != "normal") {
    err << "gearrun submit: --priority: expected high, normal or low, got '" << o.priority << "'\n";
    return kExitUsage;
  }
  std::optional<std::chrono::milliseconds> timeout;
  if (o.timeout) {
    auto d = jobs::ParseDuration(*o.timeout);
    if (!d) {
      err << "gearrun submit: --timeout: " << d.error() << "\n";
      return kExitUsage;
    }
    timeout = *d;
  }
  std::string function = "build:" + o.job + (o.label ? ":" + *o.label : "");
  if (!o.queue_anyway) {
    if (auto refused = CheckRegistered(*servers, function, o.job, "submit", err)) return *refused;
  }
  GearmanClient::Request request{.function = function,
                                 .workload = Dump(workload),
                                 .unique = o.unique.value_or(""),
                                 .priority = priority,
                                 .timeout = timeout};

  if (o.background) {
    auto handle = GearmanClient::SubmitBackground(*servers, request);
    if (!handle) {
      err << "gearrun submit: " << handle.error() << "\n";
      return kExitRequestFailed;
    }
    if (o.json) {
      out << Dump(Json{{"handle", *handle}, {"function", function}}) << "\n";
    } else {
      out << "queued " << function << " in the background as " << *handle << " (gearrun cancel "
          << *handle << " removes it while it waits)\n";
    }
    return kExitOk;
  }

  SubmitPrinter printer(out, o.json);
  auto result = GearmanClient::Submit(*servers, request, &printer);
  auto failed = [&](const std::string& why, const std::string& handle) {
    if (o.json) out << Dump(Json{{"error", why}, {"handle", handle}}) << "\n";
    err << "gearrun submit: " << why << "\n";
    return kExitRequestFailed;
  };
  if (!result) return failed(result.error(), "");
  switch (result->reply) {
    case GearmanClient::Reply::kException:
      return failed("the request failed: " + result->data, result->handle);
    case GearmanClient::Reply::kFail:
      return failed("the request failed (WORK_FAIL): no node could run it", result->handle);
    case GearmanClient::Reply::kComplete:
      break;
  }
  auto record = ParseFinalPayload(result->data);
  if (!record) return failed("the node answered without a result: " + result->data, result->handle);
  if (o.json) {
    out << result->data << "\n";
  } else {
    PrintSummary(*record, out);
    out << "log: on node " << record->node << ", builds/" << record->job << "/" << record->number
        << "/log in its state directory\n";
  }
  return BuildExitCode(record->result);
}

int RunStop(const BuildCommandOptions& o, std::ostream& out, std::ostream& err) {
  return RunBuildCommand(o, BuildCommand::kStop, out, err);
}

int RunDescribe(const BuildCommandOptions& o, std::ostream& out, std::ostream& err) {
  return RunBuildCommand(o, BuildCommand::kDescribe, out, err);
}

int RunStatus(const StatusOptions& o, std::ostream& out, std::ostream& err) {
  auto servers = ResolveServers(o.client, "status", err);
  if (!servers) return kExitUsage;
  int code = kExitOk;
  Json all = Json::array();
  for (const auto& server : *servers) {
    auto functions = AdminStatus(server, kServerAnswerTimeout);
    if (functions) {
      std::sort(functions->begin(), functions->end(),
                [](const auto& a, const auto& b) { return a.function < b.function; });
    }
    auto workers = functions ? AdminWorkers(server, kServerAnswerTimeout)
                             : tl::expected<std::vector<WorkerConnection>, std::string>(
                                   tl::unexpected(functions.error()));
    if (!functions || !workers) {
      std::string why = functions ? workers.error() : functions.error();
      err << "gearrun status: " << why << "\n";
      all.push_back({{"server", server.ToString()}, {"error", why}});
      code = kExitRequestFailed;
      continue;
    }
    // Nodes from client ids: <node>_exec-<i> and <node>_manager.
    struct Node {
      int executors = 0;
      bool manager = false;
    };
    std::map<std::string, Node> nodes;
    int others = 0;
    for (const auto& w : *workers) {
      auto exec = w.client_id.rfind("_exec-");
      bool is_manager =
          w.client_id.size() > 8 && w.client_id.compare(w.client_id.size() - 8, 8, "_manager") == 0;
      if (exec != std::string::npos && exec > 0) {
        nodes[w.client_id.substr(0, exec)].executors++;
      } else if (is_manager) {
        nodes[w.client_id.substr(0, w.client_id.size() - 8)].manager = true;
      } else if (!w.functions.empty()) {
        ++others;
      }
    }
    if (o.json) {
      Json fs = Json::array(), ns = Json::array();
      for (const auto& f : *functions) {
        fs.push_back({{"function", f.function},
                      {"queued", f.queued},
                      {"running", f.running},
                      {"workers", f.workers}});
      }
      for (const auto& [name, n] : nodes) {
        ns.push_back({{"node", name}, {"executors", n.executors}, {"manager", n.manager}});
      }
      all.push_back({{"server", server.ToString()},
                     {"functions", fs},
                     {"nodes", ns},
                     {"other_workers", others}});
      continue;
    }
    out << server.ToString() << "\n";
    size_t width = 8;
    for (const auto& f : *functions) width = std::max(width, f.function.size());
    out << "  " << std::left << std::setw(static_cast<int>(width)) << "FUNCTION" << std::right
        << std::setw(8) << "QUEUED" << std::setw(9) << "RUNNING" << std::setw(9) << "WORKERS"
        << "\n";
    for (const auto& f : *functions) {
      out << "  " << std::left << std::setw(static_cast<int>(width)) << f.function << std::right
          << std::setw(8) << f.queued << std::setw(9) << f.running << std::setw(9) << f.workers
          << "\n";
    }
    size_t node_width = 4;
    for (const auto& [name, n] : nodes) node_width = std::max(node_width, name.size());
    out << "\n  " << std::left << std::setw(static_cast<int>(node_width)) << "NODE" << std::right
        << std::setw(11) << "EXECUTORS"
        << "  MANAGER\n";
    for (const auto& [name, n] : nodes) {
      out << "  " << std::left << std::setw(static_cast<int>(node_width)) << name << std::right
          << std::setw(11) << n.executors << "  " << (n.manager ? "yes" : "no") << "\n";
    }
    if (nodes.empty()) out << "  (no gearrun node connected)\n";
    if (others > 0) out << "  and " << others << " other worker connection(s)\n";
  }
  if (o.json) out << Dump(Json{{"servers", all}}) << "\n";
  return code;
}

int RunCancel(const CancelOptions& o, std::ostream& out, std::ostream& err) {
  auto servers = ResolveServers(o.client, "cancel", err);
  if (!servers) return kExitUsage;
  // A handle does not say which server gave it: ask every server; the one holding the
  // request answers OK, the others an error.
  std::vector<std::string> errors;
  int done = 0;
  for (const auto& server : *servers) {
    if (auto ok = AdminCancel(server, o.handle, kServerAnswerTimeout)) {
      ++done;
    } else {
      errors.push_back(ok.error());
    }
  }
  if (done == 0) {
    err << "gearrun cancel: " << o.handle << " was not cancelled:\n";
    for (const auto& e : errors) err << "  " << e << "\n";
    return kExitRequestFailed;
  }
  // The other servers' errors are expected: they never held the request.
  out << "cancelled " << o.handle
      << ": a request still waiting in the queue is dropped; one that already runs is not "
         "affected (use gearrun stop)\n";
  return kExitOk;
}

}  // namespace gearrun::runner
