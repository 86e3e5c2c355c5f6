#include "jobs/job_spec.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace gearrun::jobs {

const ParameterSpec* JobSpec::FindParameter(std::string_view parameter) const {
  for (const auto& p : parameters) {
    if (p.name == parameter) return &p;
  }
  return nullptr;
}

const std::vector<std::string>& RunnerVariables() {
  static const std::vector<std::string> names = {"BUILD_NUMBER", "JOB_NAME",      "WORKSPACE",
                                                 "NODE_NAME",    "NODE_LABELS",   "EXECUTOR_NUMBER",
                                                 "BUILD_TAG",    "GEARMAN_UNIQUE"};
  return names;
}

bool IsForbiddenRequestName(std::string_view name) {
  static constexpr std::array<std::string_view, 7> kShellNames = {
      "PATH", "IFS", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4"};
  if (std::find(kShellNames.begin(), kShellNames.end(), name) != kShellNames.end()) return true;
  if (name.starts_with("LD_")) return true;
  const auto& runner = RunnerVariables();
  return std::find(runner.begin(), runner.end(), name) != runner.end();
}

bool IsValidVariableName(std::string_view name) {
  if (name.empty()) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

std::string JobNameProblem(std::string_view name) {
  bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
  if (name.empty()) return "must not be empty";
  if (!chars_ok) {
    return "may use only letters, digits, '.', '_' and '-' (it becomes a Gearman function name "
           "and a directory name)";
  }
  if (name.size() > kMaxJobNameLength) {
    return "at most " + std::to_string(kMaxJobNameLength) + " characters, got " +
           std::to_string(name.size());
  }
  if (name == "." || name == "..") return "is not a usable directory name";
  return "";
}

namespace {

struct SignalEntry {
  std::string_view name;
  int number;
};
constexpr SignalEntry kSignals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"ALRM", SIGALRM}, {"ABRT", SIGABRT}, {"CONT", SIGCONT},
    {"STOP", SIGSTOP}, {"PIPE", SIGPIPE}, {"SEGV", SIGSEGV}, {"BUS", SIGBUS},   {"FPE", SIGFPE},
    {"ILL", SIGILL},   {"TRAP", SIGTRAP}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"WINCH", SIGWINCH},
};

}  // namespace

std::optional<int> ParseSignal(std::string_view text) {
  if (text.starts_with("SIG")) text.remove_prefix(3);
  for (const auto& s : kSignals) {
    if (s.name == text) return s.number;
  }
  int number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec == std::errc() && end == text.data() + text.size() && number >= 1 && number < NSIG) {
    return number;
  }
  return std::nullopt;
}

std::string SignalName(int signal) {
  for (const auto& s : kSignals) {
    if (s.number == signal) return std::string(s.name);
  }
  return std::to_string(signal);
}

}  // namespace gearrun::jobs
