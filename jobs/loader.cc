// The yaml-cpp adapter: the only file that sees YAML::Node.
#include "jobs/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <sstream>
#include <system_error>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "jobs/suggest.h"

namespace gearrun::jobs {
namespace {

// The format, as data: the keys each kind of mapping accepts. Validation and AllJobKeys()
// both come from here, so they cannot drift apart.
struct Section {
  std::string_view name;  // "job", "step", ... (the prefix in keys_used)
  std::string_view what;  // "a job", "a step", ... (for messages)
  std::vector<std::string_view> keys;
};

const Section kJobSection = {"job",
                             "a job",
                             {"name", "description", "node", "parameters", "env", "timeout",
                              "workspace", "checkout", "shell", "kill", "steps", "finally"}};
const Section kParameterSection = {
    "parameter", "a parameter", {"default", "description", "required", "choices", "secret"}};
const Section kWorkspaceSection = {"workspace", "workspace", {"clean"}};
const Section kKillSection = {"kill", "kill", {"signal", "grace"}};
const Section kCheckoutSection = {
    "checkout", "checkout", {"url", "ref", "path", "depth", "submodules"}};
const Section kStepSection = {
    "step",
    "a step",
    {"name", "run", "timeout", "retries", "retry_delay", "retry_on", "retry_on_timeout",
     "continue_on_error", "env", "dir", "shell", "kill"}};
constexpr int kMaxRetries = 100;

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 60;
  std::string out = "'";
  out += s.size() > kMax ? std::string(s.substr(0, kMax)) + "..." : std::string(s);
  out += "'";
  return out;
}

// How a node looks, for "expected X, got Y".
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// One key of a mapping, with the nodes needed for positions.
struct Field {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

class Fields {
 public:
  void Add(Field f) { fields_.push_back(std::move(f)); }
  [[nodiscard]] const Field* Find(std::string_view key) const {
    for (const auto& f : fields_) {
      if (f.key == key) return &f;
    }
    return nullptr;
  }

 private:
  std::vector<Field> fields_;
};

// The errors of one file: each said once (an alias repeats the errors of what it stands
// for), and at most kMaxErrorsPerFile of them; the rest are counted.
struct FileErrors {
  std::set<std::tuple<int, int, std::string>> seen;
  std::size_t kept = 0;
  std::size_t dropped = 0;
};

// Reads one document; collects errors instead of stopping at the first.
class DocumentReader {
 public:
  DocumentReader(std::string file, LoadReport& report, FileErrors& errors,
                 const LoadOptions& options)
      : file_(std::move(file)), report_(report), file_errors_(errors), options_(options) {}

  std::optional<JobSpec> ReadJob(const YAML::Node& root) {
    size_t errors_before = report_.errors.size();
    const int failures_before = failures_;
    JobSpec job;
    job.location = {file_, Line(root)};
    job.kill = options_.default_kill;
    CheckTags(root);
    // Other messages about a mis-tagged value would only confuse ("must not be empty").
    if (failures_ != failures_before) return std::nullopt;
    auto fields = ReadFields(root, kJobSection, nullptr);
    if (!fields) return std::nullopt;

    if (const Field* f = fields->Find("name")) {
      if (auto name = Text(*f)) {
        job.name = *name;
        CheckJobName(*f, job.name);
      }
    } else {
      FailAt(root, "a job needs a 'name'");
    }
    if (const Field* f = fields->Find("description")) {
      if (!f->value.IsNull()) job.description = Text(*f).value_or("");
    }
    if (const Field* f = fields->Find("node")) ReadNodeExpression(*f, job);
    if (const Field* f = fields->Find("parameters")) ReadParameters(*f, job);
    if (const Field* f = fields->Find("env")) ReadEnv(*f, job.env);
    if (const Field* f = fields->Find("timeout")) job.timeout = PositiveDuration(*f);
    if (const Field* f = fields->Find("workspace")) {
      if (auto ws = ReadFields(f->value, kWorkspaceSection, f)) {
        if (const Field* clean = ws->Find("clean")) {
          job.clean_workspace = Bool(*clean).value_or(false);
        }
      }
    }
    if (const Field* f = fields->Find("checkout")) ReadCheckout(*f, job);
    if (const Field* f = fields->Find("shell")) {
      if (auto shell = Shell(*f)) job.shell = *shell;
    }
    if (const Field* f = fields->Find("kill")) ReadKill(*f, job.kill);

    if (const Field* f = fields->Find("steps")) {
      ReadSteps(*f, job, "step", job.steps);
      if (f->value.IsSequence() && f->value.size() == 0) {
        FailAt(*f, "steps: a job needs at least one step");
      }
    } else {
      FailAt(root, "a job needs 'steps', a list of at least one step");
    }
    if (const Field* f = fields->Find("finally")) {
      if (!f->value.IsNull()) ReadSteps(*f, job, "finally", job.finally);
    }
    if (failures_ == failures_before) return job;
    // Report in file order, whatever order the checks ran in.
    std::stable_sort(report_.errors.begin() + static_cast<std::ptrdiff_t>(errors_before),
                     report_.errors.end(), [](const Error& a, const Error& b) {
                       return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                     });
    return std::nullopt;
  }

 private:
  // --- positions and errors ---------------------------------------------------------------

  static int Line(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }
  static int Column(const YAML::Node& n) { return n.Mark().column >= 0 ? n.Mark().column + 1 : 0; }

  void FailAt(const YAML::Node& at, std::string message) {
    ++failures_;
    int line = Line(at);
    int column = Column(at);
    if (!file_errors_.seen.emplace(line, column, message).second) return;
    if (file_errors_.kept == kMaxErrorsPerFile) {
      ++file_errors_.dropped;
      return;
    }
    ++file_errors_.kept;
    report_.errors.push_back({ErrorCode::kInvalid, std::move(message), file_, line, column});
  }
  // Errors about a value point at the value, or at its key when the value is empty.
  void FailAt(const Field& f, std::string message) {
    bool has_mark = f.value.IsDefined() && !f.value.IsNull() && f.value.Mark().line >= 0;
    FailAt(has_mark ? f.value : f.key_node, std::move(message));
  }
  void Expected(const Field& f, std::string_view what) {
    FailAt(f, f.key + ": expected " + std::string(what) + ", got " + Describe(f.value));
  }

  void Used(std::string_view section, std::string_view key) {
    report_.keys_used.insert(std::string(section) + "." + std::string(key));
  }

  // A value starting with '!' is a YAML tag: `node: !arm && x` would silently become the
  // expression "x" (tag "!arm", anchor "&"). No job key uses tags, so any is a mistake.
  void CheckTags(const YAML::Node& node) {
    const std::string& tag = node.Tag();
    if (!tag.empty() && tag != "?" && tag != "!" && !tag.starts_with("tag:yaml.org,2002:")) {
      FailAt(node, "'" + tag +
                       "' is read by YAML as a tag, not as text; put the whole value "
                       "in quotes");
    }
    if (node.IsMap()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        CheckTags(it->first);
        CheckTags(it->second);
      }
    } else if (node.IsSequence()) {
      for (const auto& item : node) CheckTags(item);
    }
  }

  // --- mappings ---------------------------------------------------------------------------

  // Checks that `node` is a mapping whose keys are all known to `section` and appear once.
  // `parent` is the field holding the mapping (null for a document).
  std::optional<Fields> ReadFields(const YAML::Node& node, const Section& section,
                                   const Field* parent) {
    if (!node.IsMap()) {
      std::string where = parent != nullptr ? parent->key + ": " : "";
      std::string msg = where + "expected " + std::string(section.what) +
                        " as a mapping of keys to values, got " + Describe(node);
      if (parent != nullptr) {
        FailAt(*parent, msg);
      } else {
        FailAt(node, msg);
      }
      return std::nullopt;
    }
    Fields fields;
    std::map<std::string, int, std::less<>> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      YAML::Node key_node = it->first;  // a copy: `it->` yields a temporary proxy
      if (!key_node.IsScalar()) {
        FailAt(key_node, "keys of " + std::string(section.what) + " must be plain words");
        continue;
      }
      std::string key = key_node.Scalar();
      if (auto [pos, inserted] = seen.emplace(key, Line(key_node)); !inserted) {
        FailAt(key_node, "duplicate key '" + key + "' (first given on line " +
                             std::to_string(pos->second) + ")");
        continue;
      }
      if (std::find(section.keys.begin(), section.keys.end(), key) == section.keys.end()) {
        FailAt(key_node, UnknownKeyMessage(key, section));
        continue;
      }
      Used(section.name, key);
      fields.Add({key, key_node, it->second});
    }
    return fields;
  }

  static std::string UnknownKeyMessage(std::string_view key, const Section& section) {
    std::string msg = "unknown key '" + std::string(key) + "' in " + std::string(section.what);
    std::string_view best = ClosestWord(key, section.keys);
    if (!best.empty()) return msg + "; did you mean '" + std::string(best) + "'?";
    msg += " (known keys:";
    for (std::string_view known : section.keys) msg += " " + std::string(known);
    return msg + ")";
  }

  // --- scalars ----------------------------------------------------------------------------

  std::optional<std::string> Text(const Field& f) {
    if (!f.value.IsScalar()) {
      Expected(f, "text");
      return std::nullopt;
    }
    return f.value.Scalar();
  }

  std::optional<std::string> NonEmptyText(const Field& f) {
    auto text = Text(f);
    if (text && text->empty()) {
      FailAt(f, f.key + ": must not be empty");
      return std::nullopt;
    }
    return text;
  }

  std::optional<bool> Bool(const Field& f) {
    if (f.value.IsScalar()) {
      const std::string& s = f.value.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    Expected(f, "true or false");
    return std::nullopt;
  }

  std::optional<int> Int(const Field& f, const YAML::Node& node, int min, int max,
                         std::string_view what) {
    if (node.IsScalar()) {
      const std::string& s = node.Scalar();
      int value = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
      if (ec == std::errc() && end == s.data() + s.size() && value >= min && value <= max) {
        return value;
      }
    }
    FailAt(node.IsDefined() && !node.IsNull() ? node : f.key_node,
           f.key + ": expected " + std::string(what) + " from " + std::to_string(min) + " to " +
               std::to_string(max) + ", got " + Describe(node));
    return std::nullopt;
  }

  std::optional<Duration> AnyDuration(const Field& f) {
    if (!f.value.IsScalar()) {
      Expected(f, "a duration such as 250ms, 10s, 5m, 2h or 1h30m");
      return std::nullopt;
    }
    auto d = ParseDuration(f.value.Scalar());
    if (!d) {
      FailAt(f, f.key + ": " + d.error());
      return std::nullopt;
    }
    return *d;
  }

  std::optional<Duration> PositiveDuration(const Field& f) {
    auto d = AnyDuration(f);
    if (d && d->count() <= 0) {
      FailAt(f, f.key + ": must be longer than 0 (leave the key out for no limit)");
      return std::nullopt;
    }
    return d;
  }

  // --- compound values --------------------------------------------------------------------

  void CheckJobName(const Field& f, const std::string& name) {
    std::string problem = JobNameProblem(name);
    if (problem.empty()) return;
    // Quoted only when the name itself is the problem (not when it is empty or long).
    bool quote = !name.empty() && name.size() <= kMaxJobNameLength;
    FailAt(f, "name: " + (quote ? Quote(name) + " " : "") + problem);
  }

  void ReadNodeExpression(const Field& f, JobSpec& job) {
    auto text = NonEmptyText(f);
    if (!text) return;
    auto expr = LabelExpr::Parse(*text);
    if (!expr) {
      FailAt(f, "node: invalid label expression " + Quote(*text) + ": " + expr.error().message +
                    " (at character " + std::to_string(expr.error().offset + 1) + ")");
      return;
    }
    job.node = std::move(*expr);
  }

  // Walks a mapping whose keys are variable names (parameters, env): checks each name and
  // that it is given once, then hands the entry to `read`.
  template <typename ReadEntry>
  void ForEachVariable(const Field& f, std::string_view what, std::string_view expected,
                       ReadEntry read) {
    if (!f.value.IsMap()) {
      Expected(f, expected);
      return;
    }
    std::map<std::string, int, std::less<>> seen;
    for (auto it = f.value.begin(); it != f.value.end(); ++it) {
      Field entry{it->first.IsScalar() ? it->first.Scalar() : "", it->first, it->second};
      if (!CheckVariableName(entry, what)) continue;
      if (auto [pos, inserted] = seen.emplace(entry.key, Line(entry.key_node)); !inserted) {
        FailAt(entry.key_node, "duplicate " + std::string(what) + " '" + entry.key +
                                   "' (first given on line " + std::to_string(pos->second) + ")");
        continue;
      }
      read(entry);
    }
  }

  void ReadParameters(const Field& f, JobSpec& job) {
    ForEachVariable(
        f, "parameter",
        "a mapping of parameter names to {default, description, required, choices, secret}",
        [&](const Field& param) {
          if (IsForbiddenRequestName(param.key)) {
            FailAt(param.key_node, "parameter '" + param.key +
                                       "' cannot be declared: a build request must never set it");
            return;
          }
          ParameterSpec spec;
          spec.name = param.key;
          if (!param.value.IsNull()) ReadParameter(param, spec);
          job.parameters.push_back(std::move(spec));
        });
  }

  void ReadParameter(const Field& param, ParameterSpec& spec) {
    auto fields = ReadFields(param.value, kParameterSection, &param);
    if (!fields) return;
    if (const Field* f = fields->Find("default")) {
      spec.default_value = Text(*f);
      if (spec.default_value) CheckVariableSize(*f, param.key, *spec.default_value);
    }
    if (const Field* f = fields->Find("description")) {
      if (!f->value.IsNull()) spec.description = Text(*f).value_or("");
    }
    if (const Field* f = fields->Find("required")) spec.required = Bool(*f).value_or(false);
    if (const Field* f = fields->Find("secret")) spec.secret = Bool(*f).value_or(false);
    const Field* choices = fields->Find("choices");
    if (choices != nullptr) {
      if (!choices->value.IsSequence() || choices->value.size() == 0) {
        Expected(*choices, "a non-empty list of allowed values");
      } else {
        std::unordered_set<std::string> listed;
        for (const auto& item : choices->value) {
          if (!item.IsScalar()) {
            FailAt(item, "choices: expected a value, got " + Describe(item));
            continue;
          }
          if (!listed.insert(item.Scalar()).second) {
            FailAt(item, "choices: " + Quote(item.Scalar()) + " is listed twice");
            continue;
          }
          spec.choices.push_back(item.Scalar());
        }
      }
    }
    const Field* def = fields->Find("default");
    if (spec.required && def != nullptr) {
      FailAt(*def, "default: a required parameter has no default (drop one of the two)");
    }
    if (def != nullptr && spec.default_value && !spec.choices.empty() &&
        std::find(spec.choices.begin(), spec.choices.end(), *spec.default_value) ==
            spec.choices.end()) {
      FailAt(*def, "default: " + Quote(*spec.default_value) + " is not one of the choices");
    }
  }

  // A NAME=value the kernel would refuse to pass to a step (execve: E2BIG).
  void CheckVariableSize(const Field& f, const std::string& name, const std::string& value) {
    if (name.size() + 1 + value.size() > kMaxVariableBytes) {
      FailAt(f, name + ": the value is " + std::to_string(value.size()) +
                    " bytes; with its name it may be at most " + std::to_string(kMaxVariableBytes) +
                    " (the kernel's limit for one variable)");
    }
  }

  bool CheckVariableName(const Field& f, std::string_view what) {
    if (!f.key_node.IsScalar() || !IsValidVariableName(f.key)) {
      FailAt(f.key_node, std::string(what) + " name " + Quote(f.key) +
                             " must be letters, digits and '_', not starting with a digit");
      return false;
    }
    return true;
  }

  void ReadEnv(const Field& f, EnvMap& env) {
    ForEachVariable(f, "variable", "a mapping of variable names to values", [&](const Field& var) {
      const auto& runner = RunnerVariables();
      if (std::find(runner.begin(), runner.end(), var.key) != runner.end()) {
        FailAt(var.key_node,
               "variable '" + var.key + "' is set by the runner and cannot be set in env");
        return;
      }
      if (!var.value.IsScalar()) {
        FailAt(var, var.key + ": expected a value (write \"\" for an empty one), got " +
                        Describe(var.value));
        return;
      }
      CheckVariableSize(var, var.key, var.value.Scalar());
      env[var.key] = var.value.Scalar();
    });
  }

  std::optional<std::vector<std::string>> Shell(const Field& f) {
    if (!f.value.IsSequence() || f.value.size() == 0) {
      Expected(f, "a non-empty list such as [bash, -e, -c]");
      return std::nullopt;
    }
    std::vector<std::string> argv;
    for (const auto& item : f.value) {
      if (!item.IsScalar() || item.Scalar().empty()) {
        FailAt(item, "shell: expected a non-empty word, got " + Describe(item));
        return std::nullopt;
      }
      argv.push_back(item.Scalar());
    }
    return argv;
  }

  void ReadKill(const Field& f, KillSpec& kill) {
    auto fields = ReadFields(f.value, kKillSection, &f);
    if (!fields) return;
    if (const Field* s = fields->Find("signal")) {
      if (auto text = Text(*s)) {
        if (auto sig = ParseSignal(*text)) {
          kill.signal = *sig;
        } else {
          FailAt(*s, "signal: unknown signal " + Quote(*text) +
                         " (use a name such as TERM, "
                         "INT, HUP, KILL or a number)");
        }
      }
    }
    if (const Field* g = fields->Find("grace")) {
      if (auto d = AnyDuration(*g)) kill.grace = *d;
    }
  }

  void ReadCheckout(const Field& f, JobSpec& job) {
    auto fields = ReadFields(f.value, kCheckoutSection, &f);
    if (!fields) return;
    CheckoutSpec checkout;
    checkout.location = {file_, Line(f.key_node)};
    if (const Field* url = fields->Find("url")) {
      if (auto text = NonEmptyText(*url)) {
        checkout.url = *text;
        CheckReferences(*url, *text);
      }
    } else {
      FailAt(f,
             "checkout: needs a 'url' (a repository URL or path; ${NAME} of parameters "
             "allowed)");
    }
    if (const Field* ref = fields->Find("ref")) {
      if (auto text = NonEmptyText(*ref)) {
        checkout.ref = *text;
        CheckReferences(*ref, *text);
      }
    }
    if (const Field* path = fields->Find("path")) {
      if (auto p = Dir(*path)) checkout.path = *p;
    }
    if (const Field* depth = fields->Find("depth")) {
      checkout.depth = Int(*depth, depth->value, 0, 1'000'000, "a whole number").value_or(0);
    }
    if (const Field* sub = fields->Find("submodules")) {
      checkout.submodules = Bool(*sub).value_or(false);
    }
    job.checkout = std::move(checkout);
  }

  // `${` must open a ${NAME} reference with a variable name.
  void CheckReferences(const Field& f, const std::string& text) {
    for (std::size_t at = text.find("${"); at != std::string::npos; at = text.find("${", at + 2)) {
      auto end = text.find('}', at);
      std::string name = end == std::string::npos ? "" : text.substr(at + 2, end - at - 2);
      if (end == std::string::npos || !IsValidVariableName(name)) {
        FailAt(f, f.key + ": " + Quote(text) + " has a '${' that is not a ${NAME} reference");
        return;
      }
    }
  }

  // Normalises a relative path (a step's `dir`, a checkout's `path`); it must stay inside
  // the workspace.
  std::optional<std::string> Dir(const Field& f) {
    auto text = NonEmptyText(f);
    if (!text) return std::nullopt;
    if (text->front() == '/') {
      FailAt(f, f.key + ": " + Quote(*text) + " must be relative to the workspace");
      return std::nullopt;
    }
    std::vector<std::string> parts;
    std::stringstream in(*text);
    std::string part;
    while (std::getline(in, part, '/')) {
      if (part.empty() || part == ".") continue;
      if (part == "..") {
        if (parts.empty()) {
          FailAt(f, f.key + ": " + Quote(*text) + " leads out of the workspace");
          return std::nullopt;
        }
        parts.pop_back();
        continue;
      }
      parts.push_back(part);
    }
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
    return out;
  }

  void ReadSteps(const Field& f, const JobSpec& job, std::string_view default_prefix,
                 std::vector<StepSpec>& out) {
    if (!f.value.IsSequence()) {
      Expected(f, "a list of steps, each a mapping with at least 'run'");
      return;
    }
    int index = 0;
    for (const auto& node : f.value) {
      ++index;
      Field holder{f.key, f.key_node, node};
      if (auto step =
              ReadStep(holder, job, std::string(default_prefix) + " " + std::to_string(index))) {
        out.push_back(std::move(*step));
      }
    }
  }

  std::optional<StepSpec> ReadStep(const Field& holder, const JobSpec& job,
                                   std::string default_name) {
    StepSpec step;
    step.name = std::move(default_name);
    step.location = {file_, Line(holder.value)};
    step.env = job.env;
    step.shell = job.shell;
    step.kill = job.kill;
    if (!holder.value.IsMap()) {
      FailAt(holder.value.IsNull() ? holder.key_node : holder.value,
             holder.key + ": expected a step (a mapping with at least 'run'), got " +
                 Describe(holder.value));
      return std::nullopt;
    }
    auto fields = ReadFields(holder.value, kStepSection, &holder);
    if (!fields) return std::nullopt;
    if (const Field* f = fields->Find("name")) {
      if (auto name = NonEmptyText(*f)) step.name = *name;
    }
    if (const Field* f = fields->Find("run")) {
      if (auto run = NonEmptyText(*f)) {
        step.run = *run;
        if (run->size() > kMaxVariableBytes) {
          FailAt(*f, "run: the script is " + std::to_string(run->size()) + " bytes; at most " +
                         std::to_string(kMaxVariableBytes) +
                         " fit in one argument (put a longer one in a file and run that)");
        }
      }
    } else {
      FailAt(holder.value, step.name + ": a step needs 'run', the script to execute");
    }
    if (const Field* f = fields->Find("timeout")) step.timeout = PositiveDuration(*f);
    if (const Field* f = fields->Find("retries")) {
      step.retries = Int(*f, f->value, 0, kMaxRetries, "a whole number").value_or(0);
    }
    if (const Field* f = fields->Find("retry_delay")) {
      step.retry_delay = AnyDuration(*f).value_or(Duration(0));
    }
    if (const Field* f = fields->Find("retry_on")) {
      if (!f->value.IsSequence() || f->value.size() == 0) {
        Expected(*f,
                 "a non-empty list of exit codes such as [1, 75] (leave it out to retry on "
                 "any failure)");
      } else {
        for (const auto& item : f->value) {
          if (auto code = Int(*f, item, 1, 255, "an exit code")) step.retry_on.push_back(*code);
        }
      }
    }
    if (const Field* f = fields->Find("retry_on_timeout")) {
      step.retry_on_timeout = Bool(*f).value_or(false);
    }
    if (const Field* f = fields->Find("continue_on_error")) {
      step.continue_on_error = Bool(*f).value_or(false);
    }
    if (const Field* f = fields->Find("env")) {
      EnvMap own;
      ReadEnv(*f, own);
      for (auto& [k, v] : own) step.env[k] = v;
    }
    if (const Field* f = fields->Find("dir")) step.dir = Dir(*f).value_or("");
    if (const Field* f = fields->Find("shell")) {
      if (auto shell = Shell(*f)) step.shell = *shell;
    }
    if (const Field* f = fields->Find("kill")) ReadKill(*f, step.kill);
    return step;
  }

  std::string file_;
  LoadReport& report_;
  FileErrors& file_errors_;
  const LoadOptions& options_;
  int failures_ = 0;  // every error found, reported or not
};

// Walks the parser's events of a whole file before any document is built, and stops the
// parse (by throwing Exceeded, caught in LoadInto) at the first limit it crosses, so that
// neither yaml-cpp nor the reader ever works on more than the limits allow.
class BoundsChecker final : public YAML::EventHandler {
 public:
  struct Exceeded {
    std::string message;
    YAML::Mark mark;
  };

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > kMaxJobDocuments) {
      throw Exceeded{"more than " + std::to_string(kMaxJobDocuments) +
                         " documents in one file; split it into several files",
                     mark};
    }
    // Anchors are per document.
    open_.clear();
    sizes_.clear();
    names_.clear();
  }
  void OnDocumentEnd() override {}

  void OnAnchor(const YAML::Mark& /*mark*/, const std::string& name) override {
    pending_name_ = name;
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { Leaf(mark, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                const std::string& /*value*/) override {
    Leaf(mark, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    for (const Open& o : open_) {
      if (o.anchor == anchor) {
        throw Exceeded{
            "alias *" + Name(anchor) + " refers to a node that contains it (an endless structure)",
            mark};
      }
    }
    auto size = sizes_.find(anchor);
    Count(size == sizes_.end() ? 1 : size->second.nodes, mark, /*alias=*/true);
    // What the alias stands for nests as deep as its anchor's node, here.
    Nest(size == sizes_.end() ? 1 : size->second.height, mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    Start(mark, anchor);
  }
  void OnSequenceEnd() override { End(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    Start(mark, anchor);
  }
  void OnMapEnd() override { End(); }

 private:
  // A collection being read: its anchor, how many nodes it stands for so far, and how deep
  // its deepest child nests (aliases expanded).
  struct Open {
    YAML::anchor_t anchor = 0;
    std::size_t nodes = 1;
    int child_height = 0;
  };
  // What an anchored node stands for once its aliases are expanded.
  struct Size {
    std::size_t nodes = 1;
    int height = 1;  // 1 for a scalar, 1 + the deepest child for a collection
  };

  std::string Name(YAML::anchor_t anchor) const {
    auto it = names_.find(anchor);
    return it == names_.end() ? std::to_string(anchor) : it->second;
  }
  void Named(YAML::anchor_t anchor) {
    if (anchor != 0) names_[anchor] = pending_name_;
    pending_name_.clear();
  }

  void Count(std::size_t nodes, const YAML::Mark& mark, bool alias) {
    total_ += nodes;
    if (total_ > kMaxYamlNodes) {
      throw Exceeded{std::string(alias ? "aliases expand this file" : "this file has") +
                         " to more than " + std::to_string(kMaxYamlNodes) + " YAML nodes",
                     mark};
    }
    if (!open_.empty()) open_.back().nodes += nodes;
  }

  // A node of `height` levels placed under the open collections.
  void Nest(int height, const YAML::Mark& mark) {
    if (static_cast<int>(open_.size()) + height > kMaxYamlDepth) {
      throw Exceeded{
          "nested more than " + std::to_string(kMaxYamlDepth) + " levels deep (aliases expanded)",
          mark};
    }
    if (!open_.empty()) open_.back().child_height = std::max(open_.back().child_height, height);
  }

  void Leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Named(anchor);
    Count(1, mark, /*alias=*/false);
    Nest(1, mark);
    if (anchor != 0) sizes_[anchor] = Size{};
  }

  void Start(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Named(anchor);
    if (static_cast<int>(open_.size()) >= kMaxYamlDepth) {
      throw Exceeded{"nested more than " + std::to_string(kMaxYamlDepth) + " levels deep", mark};
    }
    Count(1, mark, /*alias=*/false);
    open_.push_back({anchor, 1, 0});
  }

  void End() {
    Open closed = open_.back();
    open_.pop_back();
    int height = 1 + closed.child_height;
    if (closed.anchor != 0) sizes_[closed.anchor] = Size{closed.nodes, height};
    if (!open_.empty()) {
      // The parent counted this collection's own node when it started; the rest now.
      open_.back().nodes += closed.nodes - 1;
      open_.back().child_height = std::max(open_.back().child_height, height);
    }
  }

  int documents_ = 0;
  std::size_t total_ = 0;
  std::vector<Open> open_;
  std::unordered_map<YAML::anchor_t, Size> sizes_;
  std::unordered_map<YAML::anchor_t, std::string> names_;
  std::string pending_name_;
};

int LineOf(const YAML::Mark& mark) { return mark.line >= 0 ? mark.line + 1 : 0; }
int ColumnOf(const YAML::Mark& mark) { return mark.column >= 0 ? mark.column + 1 : 0; }

// The 1-based line and column of byte `offset` of `text`.
std::pair<int, int> Position(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  auto before = text.substr(0, offset);
  int line = 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
  auto last_newline = before.rfind('\n');
  int column =
      static_cast<int>(offset - (last_newline == std::string_view::npos ? 0 : last_newline + 1)) +
      1;
  return {line, column};
}

// Checks the limits; on the first one crossed, reports it and returns false.
bool WithinBounds(std::string_view text, const std::string& file_name, LoadReport& report) {
  if (text.size() > kMaxJobFileBytes) {
    auto [line, column] = Position(text, kMaxJobFileBytes);
    report.errors.push_back({ErrorCode::kLimit,
                             "the file is larger than " + std::to_string(kMaxJobFileBytes) +
                                 " bytes (the limit is reached here); split it into several files",
                             file_name, line, column});
    return false;
  }
  std::istringstream in{std::string(text)};
  BoundsChecker checker;
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(checker)) {
    }
  } catch (const BoundsChecker::Exceeded& e) {
    report.errors.push_back(
        {ErrorCode::kLimit, e.message, file_name, LineOf(e.mark), ColumnOf(e.mark)});
    return false;
  } catch (const YAML::Exception& e) {
    report.errors.push_back({ErrorCode::kSyntax, "invalid YAML: " + e.msg, file_name,
                             LineOf(e.mark), ColumnOf(e.mark)});
    return false;
  } catch (const std::exception& e) {  // std::bad_alloc: refused, not a crash
    report.errors.push_back(
        {ErrorCode::kSyntax, std::string("cannot parse: ") + e.what(), file_name, 0, 0});
    return false;
  }
  return true;
}

void LoadInto(std::string_view text, const std::string& file_name, LoadReport& report,
              const LoadOptions& options) {
  ++report.files_read;
  if (!WithinBounds(text, file_name, report)) return;
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    report.errors.push_back({ErrorCode::kSyntax, "invalid YAML: " + e.msg, file_name,
                             LineOf(e.mark), ColumnOf(e.mark)});
    return;
  }
  FileErrors errors;
  for (const auto& doc : documents) {
    if (doc.IsNull()) continue;  // an empty document, e.g. after a trailing '---'
    try {
      DocumentReader reader(file_name, report, errors, options);
      if (auto job = reader.ReadJob(doc)) report.jobs.push_back(std::move(*job));
    } catch (const YAML::Exception& e) {
      report.errors.push_back({ErrorCode::kInvalid, "cannot read this document: " + e.msg,
                               file_name, LineOf(e.mark), ColumnOf(e.mark)});
    }
  }
  if (errors.dropped > 0) {
    report.errors.push_back({ErrorCode::kInvalid,
                             "and " + std::to_string(errors.dropped) +
                                 " more errors in this file (only the first " +
                                 std::to_string(kMaxErrorsPerFile) + " are listed)",
                             file_name, 0, 0});
  }
}

bool IsJobFile(const std::filesystem::path& p) {
  auto ext = p.extension();
  return ext == ".yaml" || ext == ".yml";
}

// Reads a job file: only a regular file (a FIFO or a device named *.yaml must not block or
// flood the reader), and no more than one byte past the size limit.
void LoadFile(const std::filesystem::path& path, LoadReport& report, const LoadOptions& options) {
  auto fail = [&](const std::string& what, int err) {
    report.errors.push_back(
        {ErrorCode::kIo, what + ": " + std::strerror(err), path.string(), 0, 0});
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return fail("cannot read job file", errno);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int err = errno;
    ::close(fd);
    return fail("cannot read job file", err);
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    report.errors.push_back(
        {ErrorCode::kIo, "not a regular file; job files must be plain files", path.string(), 0, 0});
    return;
  }
  std::string text;
  std::size_t want = kMaxJobFileBytes + 1;
  text.resize(std::min<std::size_t>(want, static_cast<std::size_t>(info.st_size) + 1));
  std::size_t got = 0;
  for (;;) {
    if (got == text.size()) {
      if (text.size() >= want) break;
      text.resize(std::min(want, text.size() * 2 + 4096));  // grew since fstat
    }
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return fail("cannot read job file", err);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  LoadInto(text, path.string(), report, options);
}

void LoadDirectory(const std::filesystem::path& dir, LoadReport& report,
                   const LoadOptions& options) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.filename().string().starts_with(".")) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && IsJobFile(p)) files.push_back(p);
  }
  if (ec) {
    report.errors.push_back(
        {ErrorCode::kIo, "cannot read directory: " + ec.message(), dir.string(), 0, 0});
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) LoadFile(f, report, options);
}

// A job name defined twice is an error at the second place, naming the first.
void CheckDuplicateNames(LoadReport& report) {
  std::map<std::string, SourceLocation, std::less<>> first;
  std::vector<JobSpec> unique;
  for (auto& job : report.jobs) {
    auto [it, inserted] = first.emplace(job.name, job.location);
    if (inserted) {
      unique.push_back(std::move(job));
      continue;
    }
    report.errors.push_back({ErrorCode::kDuplicate,
                             "job '" + job.name + "' is already defined at " + it->second.file +
                                 ":" + std::to_string(it->second.line),
                             job.location.file, job.location.line, 1});
  }
  report.jobs = std::move(unique);
}

}  // namespace

const std::set<std::string>& AllJobKeys() {
  static const std::set<std::string> keys = [] {
    std::set<std::string> out;
    for (const Section* s : {&kJobSection, &kParameterSection, &kWorkspaceSection, &kKillSection,
                             &kStepSection, &kCheckoutSection}) {
      for (auto key : s->keys) out.insert(std::string(s->name) + "." + std::string(key));
    }
    return out;
  }();
  return keys;
}

LoadReport LoadJobText(std::string_view text, const std::string& file_name,
                       const LoadOptions& options) {
  LoadReport report;
  LoadInto(text, file_name, report, options);
  CheckDuplicateNames(report);
  return report;
}

LoadReport LoadJobs(const std::vector<std::filesystem::path>& paths, const LoadOptions& options) {
  namespace fs = std::filesystem;
  LoadReport report;
  for (const auto& path : paths) {
    std::error_code ec;
    auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) {
      report.errors.push_back({ErrorCode::kIo, "no such file or directory", path.string(), 0, 0});
    } else if (fs::is_directory(status)) {
      LoadDirectory(path, report, options);
    } else {
      LoadFile(path, report, options);
    }
  }
  CheckDuplicateNames(report);
  return report;
}

}  // namespace gearrun::jobs
