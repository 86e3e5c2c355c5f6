#include "sandbox/process.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>

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

OwnLimits ReadOwnLimits() {
  OwnLimits own;
  auto hard = [](int resource) -> std::optional<std::uint64_t> {
    rlimit limit{};
    if (::getrlimit(resource, &limit) != 0 || limit.rlim_max == RLIM_INFINITY) return std::nullopt;
    return static_cast<std::uint64_t>(limit.rlim_max);
  };
  own.core_bytes = hard(RLIMIT_CORE);
  own.open_files = hard(RLIMIT_NOFILE);
  own.processes = hard(RLIMIT_NPROC);
  own.address_space_bytes = hard(RLIMIT_AS);
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("CapEff:")) continue;
    std::uint64_t caps = 0;
    std::istringstream(line.substr(7)) >> std::hex >> caps;
    constexpr int kCapSysResource = 24;
    own.can_raise = (caps >> kCapSysResource & 1U) != 0;
  }
  std::ifstream nr_open("/proc/sys/fs/nr_open");
  std::uint64_t value = 0;
  if (nr_open >> value && value > 0) own.nr_open = value;
  return own;
}

tl::expected<void, std::string> CheckLimits(const ResourceLimits& limits, const OwnLimits& own) {
  struct Row {
    const char* name;
    const std::optional<std::uint64_t>& wanted;
    const std::optional<std::uint64_t>& hard;
    const char* raise;
  };
  const Row rows[] = {
      {"core", limits.core_bytes, own.core_bytes, "LimitCORE= in the unit, ulimit -Hc"},
      {"nofile", limits.open_files, own.open_files, "LimitNOFILE= in the unit, ulimit -Hn"},
      {"nproc", limits.processes, own.processes, "LimitNPROC= in the unit, ulimit -Hu"},
      {"as", limits.address_space_bytes, own.address_space_bytes,
       "LimitAS= in the unit, ulimit -Hv"},
  };
  for (const Row& row : rows) {
    if (!row.wanted) continue;
    const std::string what = std::string(row.name) + "=" + std::to_string(*row.wanted);
    if (&row.wanted == &limits.open_files && *row.wanted > own.nr_open) {
      return tl::unexpected(what + " is above the kernel's ceiling for open files (fs.nr_open = " +
                            std::to_string(own.nr_open) + "): lower it, or raise fs.nr_open");
    }
    if (row.hard && *row.wanted > *row.hard && !own.can_raise) {
      return tl::unexpected(what + " is above gearrun's own hard limit (" +
                            std::to_string(*row.hard) +
                            "), which it may not raise (no CAP_SYS_RESOURCE): raise gearrun's "
                            "hard limit (" +
                            row.raise + ") or lower this one");
    }
  }
  return {};
}

}  // namespace gearrun::sandbox
