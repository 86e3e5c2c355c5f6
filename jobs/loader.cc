// The yaml-cpp adapter: the only file that sees YAML::Node.
#include "jobs/loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <tuple>

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
constexpr size_t kMaxJobNameLength = 100;

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

// Reads one document; collects errors instead of stopping at the first.
class DocumentReader {
 public:
  DocumentReader(std::string file, LoadReport& report, const LoadOptions& options)
      : file_(std::move(file)), report_(report), options_(options) {}

  std::optional<JobSpec> ReadJob(const YAML::Node& root) {
    size_t errors_before = report_.errors.size();
    JobSpec job;
    job.location = {file_, Line(root)};
    job.kill = options_.default_kill;
    CheckTags(root);
    // Other messages about a mis-tagged value would only confuse ("must not be empty").
    if (report_.errors.size() != errors_before) return std::nullopt;
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
    if (report_.errors.size() == errors_before) return job;
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
    report_.errors.push_back(
        {ErrorCode::kInvalid, std::move(message), file_, Line(at), Column(at)});
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
    bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    });
    if (name.empty()) {
      FailAt(f, "name: must not be empty");
    } else if (!chars_ok) {
      FailAt(f, "name: " + Quote(name) +
                    " may use only letters, digits, '.', '_' and '-' (it becomes a Gearman "
                    "function name and a directory name)");
    } else if (name.size() > kMaxJobNameLength) {
      FailAt(f, "name: at most " + std::to_string(kMaxJobNameLength) + " characters, got " +
                    std::to_string(name.size()));
    } else if (name == "." || name == "..") {
      FailAt(f, "name: " + Quote(name) + " is not a usable directory name");
    }
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
    if (const Field* f = fields->Find("default")) spec.default_value = Text(*f);
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
        for (const auto& item : choices->value) {
          if (!item.IsScalar()) {
            FailAt(item, "choices: expected a value, got " + Describe(item));
            continue;
          }
          if (std::find(spec.choices.begin(), spec.choices.end(), item.Scalar()) !=
              spec.choices.end()) {
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
      if (auto run = NonEmptyText(*f)) step.run = *run;
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
  const LoadOptions& options_;
};

void LoadInto(std::string_view text, const std::string& file_name, LoadReport& report,
              const LoadOptions& options) {
  ++report.files_read;
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    report.errors.push_back({ErrorCode::kSyntax, "invalid YAML: " + e.msg, file_name,
                             e.mark.line >= 0 ? e.mark.line + 1 : 0,
                             e.mark.column >= 0 ? e.mark.column + 1 : 0});
    return;
  }
  for (const auto& doc : documents) {
    if (doc.IsNull()) continue;  // an empty document, e.g. after a trailing '---'
    try {
      DocumentReader reader(file_name, report, options);
      if (auto job = reader.ReadJob(doc)) report.jobs.push_back(std::move(*job));
    } catch (const YAML::Exception& e) {
      report.errors.push_back({ErrorCode::kInvalid, "cannot read this document: " + e.msg,
                               file_name, e.mark.line + 1, e.mark.column + 1});
    }
  }
}

bool IsJobFile(const std::filesystem::path& p) {
  auto ext = p.extension();
  return ext == ".yaml" || ext == ".yml";
}

void LoadFile(const std::filesystem::path& path, LoadReport& report, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  if (in) buffer << in.rdbuf();
  if (!in || in.bad()) {
    std::error_code ec(errno, std::generic_category());
    report.errors.push_back(
        {ErrorCode::kIo, "cannot read job file: " + ec.message(), path.string(), 0, 0});
    return;
  }
  LoadInto(buffer.str(), path.string(), report, options);
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
