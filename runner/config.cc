// Node configuration. The only yaml-cpp adapter of runner/: the file is turned into the same
// (setting, values) pairs as the flags, and one function applies and checks both.
#include "runner/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include "jobs/duration.h"
#include "jobs/labels.h"
#include "jobs/suggest.h"

namespace gearrun::runner {
namespace {

// Settings, with the shape of their value. A list may be given as one scalar too.
enum class Shape { kScalar, kList, kMapping, kScalarOrMapping };
struct Setting {
  std::string_view key;
  Shape shape;
};
const std::vector<Setting>& Settings() {
  static const std::vector<Setting> settings = {
      {"servers", Shape::kList},          {"node", Shape::kScalar},
      {"labels", Shape::kList},           {"executors", Shape::kScalar},
      {"jobs", Shape::kScalarOrMapping},  {"state_dir", Shape::kScalar},
      {"workspace_root", Shape::kScalar}, {"pass_through", Shape::kList},
      {"env_allowlist", Shape::kList},    {"log_cap", Shape::kScalar},
      {"limits", Shape::kMapping},        {"memory_max", Shape::kScalar},
      {"pids_max", Shape::kScalar},       {"containment", Shape::kScalar},
      {"kill", Shape::kMapping},          {"drain_timeout", Shape::kScalar},
      {"once", Shape::kScalar},           {"log_level", Shape::kScalar},
      {"log_format", Shape::kScalar},
  };
  return settings;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

std::optional<int> ParseInt(std::string_view text, int min, int max) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

// Applies one setting. `values` holds one entry for a scalar, several for a list, and
// "name=value" entries for a mapping. Returns what is wrong, if anything.
std::optional<std::string> Apply(ServeConfig& c, std::string_view key,
                                 const std::vector<std::string>& values) {
  const std::string one = values.empty() ? "" : values.front();
  auto expected = [&](std::string_view what) {
    return "expected " + std::string(what) + ", got '" + one + "'";
  };
  if (key == "servers") {
    std::vector<ServerAddress> servers;
    for (const auto& v : values) {
      auto address = ParseServerAddress(v);
      if (!address) return address.error();
      if (std::find(servers.begin(), servers.end(), *address) == servers.end()) {
        servers.push_back(*address);
      }
    }
    if (servers.empty()) return "give at least one server as host:port";
    c.servers = std::move(servers);
    c.servers_configured = true;
  } else if (key == "node") {
    if (one.empty() || one.size() > 100 || !std::all_of(one.begin(), one.end(), IsNameChar)) {
      return "'" + one +
             "' must be 1 to 100 letters, digits, '.', '_' or '-' (it is part of "
             "client ids and of the stop:<node> function)";
    }
    c.node.name = one;
  } else if (key == "labels") {
    std::vector<std::string> labels;
    for (const auto& v : values) {
      for (auto& l : jobs::SplitLabelList(v)) {
        auto parsed = jobs::LabelExpr::Parse(l);
        if (!parsed || parsed->atoms().size() != 1 || parsed->atoms()[0] != l) {
          return "'" + l + "' is not a usable label (no spaces or & | ! ( ) < > \")";
        }
        labels.push_back(std::move(l));
      }
    }
    c.node.labels = std::move(labels);
  } else if (key == "executors") {
    auto n = ParseInt(one, 1, 256);
    if (!n) return expected("a whole number from 1 to 256");
    c.executors = *n;
  } else if (key == "jobs") {
    if (one.empty()) return "expected a job file or directory";
    c.jobs = one;
    c.jobs_git.reset();
  } else if (key == "jobs{}") {  // the mapping form: jobs from git
    JobsFromGit git = c.jobs_git.value_or(JobsFromGit{});
    for (const auto& v : values) {
      auto eq = v.find('=');
      std::string name = v.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : v.substr(eq + 1);
      if (name == "git") {
        if (value.empty()) return "git: expected the repository's URL";
        git.url = value;
      } else if (name == "ref") {
        git.ref = value;
      } else if (name == "path") {
        std::filesystem::path path = std::filesystem::path(value).lexically_normal();
        if (path.is_absolute() || (!path.empty() && *path.begin() == "..")) {
          return "path: '" + value + "' must be relative to the repository's top folder";
        }
        // "jobs/" and "jobs" alike (messages name files as jobs/x.yaml); "" for the top.
        std::string text = path.string();
        while (text.ends_with('/')) text.pop_back();
        git.path = text == "." ? "" : text;
      } else if (name == "poll") {
        auto d = jobs::ParseDuration(value);
        if (!d) return "poll: " + d.error() + " (0 fetches only on SIGHUP)";
        git.poll = *d;
      } else {
        return "unknown key '" + name + "' (known: git, ref, path, poll)";
      }
    }
    if (git.url.empty()) {
      return "no repository: give jobs: {git: URL, ...} in the configuration file or --jobs-git "
             "URL (a plain path means a local folder)";
    }
    c.jobs_git = std::move(git);
  } else if (key == "state_dir") {
    if (one.empty()) return "expected a directory";
    c.node.state_dir = one;
  } else if (key == "workspace_root") {
    if (one.empty()) return "expected a directory";
    c.node.workspace_root = one;
  } else if (key == "pass_through") {
    c.request_policy.pass_through = values;
  } else if (key == "env_allowlist") {
    for (const auto& v : values) {
      if (!jobs::IsValidVariableName(v)) return "'" + v + "' is not a variable name";
    }
    c.node.env_allowlist = values;
  } else if (key == "log_cap") {
    auto size = ParseSize(one);
    if (!size) return expected("a size such as 256M, 1G, or 0 for no cap");
    c.node.log_cap_bytes = *size;
  } else if (key == "limits") {
    for (const auto& v : values) {
      auto eq = v.find('=');
      std::string name = v.substr(0, eq);
      auto size = eq == std::string::npos ? std::nullopt : ParseSize(v.substr(eq + 1));
      auto& l = c.node.limits;
      std::optional<std::uint64_t>* field = name == "core"     ? &l.core_bytes
                                            : name == "nofile" ? &l.open_files
                                            : name == "nproc"  ? &l.processes
                                            : name == "as"     ? &l.address_space_bytes
                                                               : nullptr;
      if (field == nullptr) {
        return "unknown limit '" + name + "' (known: core, nofile, nproc, as)";
      }
      if (!size) return "limit '" + name + "': expected a number or a size such as 4G";
      *field = size;
    }
  } else if (key == "memory_max" || key == "pids_max") {
    auto size = ParseSize(one);
    if (!size || *size == 0) return expected("a positive number or size");
    (key == "memory_max" ? c.node.memory_max_bytes : c.node.pids_max) = size;
  } else if (key == "containment") {
    if (one == "auto") {
      c.node.containment = sandbox::ContainmentMode::kAuto;
    } else if (one == "cgroup") {
      c.node.containment = sandbox::ContainmentMode::kCgroup;
    } else if (one == "process-group") {
      c.node.containment = sandbox::ContainmentMode::kProcessGroup;
    } else {
      return expected("auto, cgroup or process-group");
    }
  } else if (key == "kill") {
    for (const auto& v : values) {
      auto eq = v.find('=');
      std::string name = v.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : v.substr(eq + 1);
      if (name == "signal") {
        auto sig = jobs::ParseSignal(value);
        if (!sig) return "signal: unknown signal '" + value + "' (such as TERM, INT, KILL)";
        c.kill.signal = *sig;
      } else if (name == "grace") {
        auto d = jobs::ParseDuration(value);
        if (!d) return "grace: " + d.error();
        c.kill.grace = *d;
      } else {
        return "unknown key '" + name + "' (known: signal, grace)";
      }
    }
  } else if (key == "drain_timeout") {
    auto d = jobs::ParseDuration(one);
    if (!d) return d.error();
    c.drain_timeout = *d;
  } else if (key == "once") {
    if (one == "true" || one == "True" || one == "TRUE") {
      c.once = true;
    } else if (one == "false" || one == "False" || one == "FALSE") {
      c.once = false;
    } else {
      return expected("true or false");
    }
  } else if (key == "log_level") {
    static const std::vector<std::string_view> levels = {"trace", "debug", "info", "warn", "error"};
    if (std::find(levels.begin(), levels.end(), one) == levels.end()) {
      return expected("trace, debug, info, warn or error");
    }
    c.log_level = one;
  } else if (key == "log_format") {
    if (one == "text") {
      c.log_format = LogFormat::kText;
    } else if (one == "json") {
      c.log_format = LogFormat::kJson;
    } else {
      return expected("text or json");
    }
  } else {
    return "unknown setting";
  }
  return std::nullopt;
}

std::string Position(const std::string& file, const YAML::Mark& mark) {
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// Reads the file into (setting, values) and applies each.
tl::expected<void, std::string> ApplyFile(ServeConfig& config, const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return tl::unexpected(path.string() + ": cannot read the configuration file");
  std::stringstream text;
  text << in.rdbuf();
  std::string file = path.string();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return tl::unexpected(Position(file, e.mark) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return {};
  if (!root.IsMap()) {
    return tl::unexpected(Position(file, root.Mark()) +
                          ": expected a mapping of settings (servers, node, labels, ...)");
  }
  std::vector<std::string_view> known;
  for (const auto& s : Settings()) known.push_back(s.key);
  std::vector<std::string> seen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    YAML::Node key_node = it->first;
    YAML::Node value = it->second;
    std::string key = key_node.IsScalar() ? key_node.Scalar() : "";
    auto setting = std::find_if(Settings().begin(), Settings().end(),
                                [&](const Setting& s) { return s.key == key; });
    if (setting == Settings().end()) {
      std::string msg = Position(file, key_node.Mark()) + ": unknown setting '" + key + "'";
      std::string_view best = jobs::ClosestWord(key, known);
      if (!best.empty()) msg += "; did you mean '" + std::string(best) + "'?";
      return tl::unexpected(msg);
    }
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return tl::unexpected(Position(file, key_node.Mark()) + ": " + key + ": given twice");
    }
    seen.push_back(key);
    const YAML::Mark& at = value.IsNull() ? key_node.Mark() : value.Mark();
    std::vector<std::string> values;
    bool ok = true;
    std::string apply_key = key;
    if (setting->shape == Shape::kScalarOrMapping && value.IsMap()) {
      apply_key = key + "{}";
      for (auto m = value.begin(); ok && m != value.end(); ++m) {
        ok = m->first.IsScalar() && m->second.IsScalar();
        if (ok) values.push_back(m->first.Scalar() + "=" + m->second.Scalar());
      }
    } else if (setting->shape == Shape::kMapping) {
      ok = value.IsMap();
      for (auto m = value.begin(); ok && m != value.end(); ++m) {
        ok = m->first.IsScalar() && m->second.IsScalar();
        if (ok) values.push_back(m->first.Scalar() + "=" + m->second.Scalar());
      }
    } else if (value.IsScalar()) {
      values.push_back(value.Scalar());
    } else if (setting->shape == Shape::kList && value.IsSequence()) {
      for (const auto& item : value) {
        ok = ok && item.IsScalar();
        if (ok) values.push_back(item.Scalar());
      }
    } else {
      ok = value.IsNull() && setting->shape == Shape::kList;  // an empty list
    }
    if (!ok) {
      std::string_view what = setting->shape == Shape::kMapping ? "a mapping of names to values"
                              : setting->shape == Shape::kList  ? "a value or a list of values"
                              : setting->shape == Shape::kScalarOrMapping
                                  ? "a single value or a mapping"
                                  : "a single value";
      return tl::unexpected(Position(file, at) + ": " + key + ": expected " + std::string(what));
    }
    if (auto problem = Apply(config, apply_key, values)) {
      return tl::unexpected(Position(file, at) + ": " + key + ": " + *problem);
    }
  }
  return {};
}

}  // namespace

std::string ServerAddress::ToString() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

tl::expected<ServerAddress, std::string> ParseServerAddress(std::string_view text) {
  ServerAddress address;
  std::string_view host = text;
  std::string_view port;
  if (text.starts_with("[")) {
    auto close = text.find(']');
    if (close == std::string_view::npos)
      return tl::unexpected("'" + std::string(text) + "': unclosed '['");
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return tl::unexpected("'" + std::string(text) + "': expected [host]:port");
      port = rest.substr(1);
    }
  } else if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon) {
      return tl::unexpected("'" + std::string(text) + "': write IPv6 addresses as [addr]:port");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) return tl::unexpected("'" + std::string(text) + "': the host is missing");
  address.host = std::string(host);
  if (!port.empty() || text.ends_with(":")) {
    auto p = ParseInt(port, 1, 65535);
    if (!p) return tl::unexpected("'" + std::string(text) + "': the port must be 1 to 65535");
    address.port = *p;
  }
  return address;
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  // Only the first label of a fully qualified name, as Jenkins agents are usually named.
  std::string host = name;
  return host.substr(0, host.find('.'));
}

std::optional<std::uint64_t> ParseSize(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  int shift = 0;
  if (unit == "K" || unit == "k") {
    shift = 10;
  } else if (unit == "M" || unit == "m") {
    shift = 20;
  } else if (unit == "G" || unit == "g") {
    shift = 30;
  } else if (!unit.empty()) {
    return std::nullopt;
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::filesystem::path DefaultStateDir() {
  if (::geteuid() == 0) return "/var/lib/gearrun";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::filesystem::path(xdg) / "gearrun";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return std::filesystem::path(home) / ".local/state/gearrun";
  }
  return "/tmp/gearrun-" + std::to_string(::geteuid());
}

tl::expected<ServeConfig, std::string> LoadServeConfig(const ServeFlags& flags) {
  ServeConfig config;
  config.servers = {ServerAddress{"127.0.0.1", 4730}};
  config.node.name = HostName();
  config.node.state_dir = DefaultStateDir();
  config.jobs = "/etc/gearrun/jobs";
  config.executors = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 256u));

  if (flags.config_file) {
    if (auto ok = ApplyFile(config, *flags.config_file); !ok) return tl::unexpected(ok.error());
  }

  struct FlagValue {
    std::string_view flag;
    std::string_view key;
    std::vector<std::string> values;
  };
  std::vector<FlagValue> given;
  auto scalar = [&](std::string_view flag, std::string_view key,
                    const std::optional<std::string>& v) {
    if (v) given.push_back({flag, key, {*v}});
  };
  auto list = [&](std::string_view flag, std::string_view key, const std::vector<std::string>& v) {
    if (!v.empty()) given.push_back({flag, key, v});
  };
  list("--server", "servers", flags.servers);
  scalar("--node", "node", flags.node);
  list("--labels", "labels", flags.labels);
  scalar("--executors", "executors", flags.executors);
  if (flags.jobs && flags.jobs_git) {
    return tl::unexpected(
        std::string("--jobs and --jobs-git: give one (a local folder, or a repository)"));
  }
  scalar("--jobs", "jobs", flags.jobs);
  for (auto [flag, name, v] : {std::tuple{"--jobs-git", "git", &flags.jobs_git},
                               std::tuple{"--jobs-ref", "ref", &flags.jobs_ref},
                               std::tuple{"--jobs-path", "path", &flags.jobs_path},
                               std::tuple{"--jobs-poll", "poll", &flags.jobs_poll}}) {
    if (*v) given.push_back({flag, "jobs{}", {std::string(name) + "=" + **v}});
  }
  scalar("--state-dir", "state_dir", flags.state_dir);
  scalar("--workspace-root", "workspace_root", flags.workspace_root);
  list("--pass-through", "pass_through", flags.pass_through);
  scalar("--log-cap", "log_cap", flags.log_cap);
  list("--limit", "limits", flags.limits);
  scalar("--memory-max", "memory_max", flags.memory_max);
  scalar("--pids-max", "pids_max", flags.pids_max);
  scalar("--containment", "containment", flags.containment);
  if (flags.kill_signal)
    given.push_back({"--kill-signal", "kill", {"signal=" + *flags.kill_signal}});
  if (flags.kill_grace) given.push_back({"--kill-grace", "kill", {"grace=" + *flags.kill_grace}});
  scalar("--drain-timeout", "drain_timeout", flags.drain_timeout);
  if (flags.once) given.push_back({"--once", "once", {"true"}});
  scalar("--log-level", "log_level", flags.log_level);
  scalar("--log-format", "log_format", flags.log_format);
  for (const auto& g : given) {
    if (auto problem = Apply(config, g.key, g.values)) {
      return tl::unexpected(std::string(g.flag) + ": " + *problem);
    }
  }
  return config;
}

}  // namespace gearrun::runner
