#include "sandbox/process.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace gearrun::sandbox {
namespace {

constexpr std::string_view kDefaultPath = "/usr/bin:/bin";

enum class Probe { kExecutable, kNotExecutable, kNotRegular, kMissing };

Probe ProbeFile(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return Probe::kMissing;
  if (!S_ISREG(info.st_mode)) return Probe::kNotRegular;
  return ::access(path.c_str(), X_OK) == 0 ? Probe::kExecutable : Probe::kNotExecutable;
}

// A relative candidate is relative to the step's directory, where the child will be.
std::filesystem::path InDir(const std::filesystem::path& dir, const std::filesystem::path& path) {
  if (path.is_absolute() || dir.empty()) return path;
  return dir / path;
}

}  // namespace

std::string_view ToString(Outcome::Ending ending) {
  switch (ending) {
    case Outcome::Ending::kExited:
      return "exited";
    case Outcome::Ending::kSignaled:
      return "signaled";
    case Outcome::Ending::kTimedOut:
      return "timed out";
    case Outcome::Ending::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

tl::expected<std::filesystem::path, Error> ResolveProgram(const std::string& argv0,
                                                          const std::vector<std::string>& env,
                                                          const std::filesystem::path& dir) {
  if (argv0.empty()) return Fail(EINVAL, "the command's program (argv[0]) is empty");

  if (argv0.find('/') != std::string::npos) {
    std::filesystem::path candidate = InDir(dir, argv0);
    switch (ProbeFile(candidate)) {
      case Probe::kExecutable:
        return candidate;
      case Probe::kNotExecutable:
        return Fail(EACCES, "program '" + candidate.string() + "' is not executable");
      case Probe::kNotRegular:
        return Fail(EACCES, "program '" + candidate.string() + "' is not a regular file");
      case Probe::kMissing:
        return Fail(ENOENT, "program '" + candidate.string() + "' does not exist");
    }
  }

  // The first PATH wins, as with getenv() in the child.
  std::string_view search = kDefaultPath;
  for (const std::string& entry : env) {
    if (std::string_view(entry).substr(0, 5) == "PATH=") {
      search = std::string_view(entry).substr(5);
      break;
    }
  }
  std::optional<std::filesystem::path> not_executable;
  std::string_view rest = search;
  for (;;) {
    std::size_t colon = rest.find(':');
    std::string_view element = rest.substr(0, colon);
    // An empty PATH element means the current directory.
    std::filesystem::path candidate =
        InDir(dir, std::filesystem::path(element.empty() ? "." : std::string(element)) / argv0);
    Probe probe = ProbeFile(candidate);
    if (probe == Probe::kExecutable) return candidate;
    if (probe == Probe::kNotExecutable && !not_executable) not_executable = candidate;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  if (not_executable) {
    return Fail(EACCES, "program '" + not_executable->string() + "' is not executable");
  }
  return Fail(ENOENT, "program '" + argv0 + "' not found in PATH=" + std::string(search));
}

}  // namespace gearrun::sandbox
