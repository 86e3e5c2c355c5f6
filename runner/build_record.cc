// The nlohmann-json adapter for build records.
#include "runner/build_record.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "jobs/job_spec.h"
#include "sandbox/unique_fd.h"

namespace gearrun::runner {
namespace {

using sandbox::UniqueFd;

// Far beyond any real count; keeps `number + 1` from overflowing.
constexpr std::int64_t kMaxBuildNumber = std::int64_t{1} << 53;
namespace fs = std::filesystem;

std::string Errno(const std::string& what, const fs::path& path) {
  return what + " " + path.string() + ": " + std::strerror(errno);
}

tl::expected<std::string, std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return tl::unexpected(Errno("cannot read", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

constexpr std::string_view kResults[] = {"RUNNING", "SUCCESS",   "UNSTABLE", "FAILURE",
                                         "ABORTED", "NOT_BUILT", "LOST"};
constexpr std::string_view kStepResults[] = {"SUCCESS", "FAILURE", "ABORTED", "NOT_RUN"};

template <typename E, size_t N>
std::optional<E> Find(std::string_view s, const std::string_view (&names)[N]) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

// Job names become directory names: anything else is refused before a path is made.
tl::expected<void, std::string> CheckJobName(const std::string& job) {
  if (std::string problem = jobs::JobNameProblem(job); !problem.empty()) {
    return tl::unexpected("invalid job name: " + problem);
  }
  return {};
}

template <typename E, size_t N>
E FromString(const std::string& s, const std::string_view (&names)[N], E fallback) {
  return Find<E>(s, names).value_or(fallback);
}

}  // namespace

std::string_view ToString(Result result) { return kResults[static_cast<size_t>(result)]; }
std::string_view ToString(StepResult result) { return kStepResults[static_cast<size_t>(result)]; }
std::optional<Result> ResultFromString(std::string_view text) {
  return Find<Result>(text, kResults);
}
std::optional<StepResult> StepResultFromString(std::string_view text) {
  return Find<StepResult>(text, kStepResults);
}

tl::expected<void, std::string> WriteFileAtomically(const fs::path& path, std::string_view text) {
  // Unique per writer, also between threads of one process (set_description vs build end).
  static std::atomic<std::uint64_t> counter{0};
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return tl::unexpected(Errno("cannot create", tmp));
    if (!sandbox::WriteAll(fd.get(), text) || ::fsync(fd.get()) != 0) {
      auto err = Errno("cannot write", tmp);
      ::unlink(tmp.c_str());
      return tl::unexpected(err);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto err = Errno("cannot rename to", path);
    ::unlink(tmp.c_str());
    return tl::unexpected(err);
  }
  UniqueFd dir(::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
  return {};
}

tl::expected<void, std::string> ProbeWritable(const fs::path& dir) {
  fs::path probe = dir / ".write-probe";
  auto written = WriteFileAtomically(probe, "gearrun\n");
  if (!written) return written;
  if (::unlink(probe.c_str()) != 0) return tl::unexpected(Errno("cannot remove", probe));
  return {};
}

std::string ToJson(const BuildRecord& r) {
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  for (const auto& s : r.steps) {
    nlohmann::ordered_json j = {{"name", s.name},
                                {"finally", s.is_finally},
                                {"result", ToString(s.result)},
                                {"exit_code", s.exit_code},
                                {"signal", s.signal},
                                {"timed_out", s.timed_out},
                                {"attempts", s.attempts},
                                {"duration_ms", s.duration_ms},
                                {"cpu_ms", s.cpu_ms},
                                {"peak_rss_bytes", s.peak_rss_bytes},
                                {"leftovers_killed", s.leftovers_killed}};
    if (!s.error.empty()) j["error"] = s.error;
    steps.push_back(std::move(j));
  }
  nlohmann::ordered_json j = {{"job", r.job},
                              {"number", r.number},
                              {"result", ToString(r.result)},
                              {"reason", r.reason},
                              {"node", r.node},
                              {"node_labels", r.node_labels},
                              {"executor", r.executor},
                              {"unique", r.unique},
                              {"parameters", r.parameters},
                              {"dropped_parameters", r.dropped_parameters},
                              {"description", r.description},
                              {"started_at", r.started_at},
                              {"finished_at", r.finished_at},
                              {"duration_ms", r.duration_ms},
                              {"steps", steps},
                              {"workspace", r.workspace},
                              {"containment", r.containment},
                              {"leftovers_killed", r.leftovers_killed},
                              {"log_capped", r.log_capped},
                              {"checkout_commit", r.checkout_commit},
                              {"jobs_commit", r.jobs_commit},
                              {"runner_pid", r.runner_pid},
                              {"runner_start", r.runner_start},
                              {"cookie", r.cookie},
                              {"cgroup", r.cgroup}};
  if (!r.state_error.empty()) j["state_error"] = r.state_error;
  // Replace, not throw, on invalid UTF-8 (a parameter value may hold any bytes).
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

tl::expected<BuildRecord, std::string> ParseBuildRecord(std::string_view text) {
  try {
    auto j = nlohmann::json::parse(text);
    BuildRecord r;
    r.job = j.at("job").get<std::string>();
    r.number = j.at("number").get<std::int64_t>();
    r.result = FromString(j.at("result").get<std::string>(), kResults, Result::kLost);
    r.reason = j.value("reason", "");
    r.node = j.value("node", "");
    r.node_labels = j.value("node_labels", std::vector<std::string>{});
    r.executor = j.value("executor", 0);
    r.unique = j.value("unique", "");
    r.parameters = j.value("parameters", std::map<std::string, std::string>{});
    r.dropped_parameters = j.value("dropped_parameters", std::vector<std::string>{});
    r.description = j.value("description", "");
    r.started_at = j.value("started_at", "");
    r.finished_at = j.value("finished_at", "");
    r.duration_ms = j.value("duration_ms", std::int64_t{0});
    r.workspace = j.value("workspace", "");
    r.containment = j.value("containment", "");
    r.leftovers_killed = j.value("leftovers_killed", 0);
    r.log_capped = j.value("log_capped", false);
    r.runner_pid = j.value("runner_pid", 0);
    r.checkout_commit = j.value("checkout_commit", "");
    r.jobs_commit = j.value("jobs_commit", "");
    r.runner_start = j.value("runner_start", "");
    r.cookie = j.value("cookie", "");
    r.cgroup = j.value("cgroup", "");
    r.state_error = j.value("state_error", "");
    for (const auto& s : j.value("steps", nlohmann::json::array())) {
      StepRecord step;
      step.name = s.value("name", "");
      step.is_finally = s.value("finally", false);
      step.result = FromString(s.value("result", ""), kStepResults, StepResult::kNotRun);
      step.exit_code = s.value("exit_code", -1);
      step.signal = s.value("signal", 0);
      step.timed_out = s.value("timed_out", false);
      step.attempts = s.value("attempts", 0);
      step.duration_ms = s.value("duration_ms", std::int64_t{0});
      step.cpu_ms = s.value("cpu_ms", std::int64_t{0});
      step.peak_rss_bytes = s.value("peak_rss_bytes", std::uint64_t{0});
      step.leftovers_killed = s.value("leftovers_killed", 0);
      step.error = s.value("error", "");
      r.steps.push_back(std::move(step));
    }
    return r;
  } catch (const std::exception& e) {
    return tl::unexpected(std::string("invalid build record: ") + e.what());
  }
}

BuildStore::BuildStore(fs::path state_dir)
    : builds_(state_dir / "builds"), running_(state_dir / "running") {}

fs::path BuildStore::RunningMarker(const std::string& job, std::int64_t number) const {
  return running_ / (std::to_string(number) + "@" + job);  // job names hold no '@'
}

fs::path BuildStore::BuildDir(const std::string& job, std::int64_t number) const {
  return builds_ / job / std::to_string(number);
}

fs::path BuildStore::LogPath(const std::string& job, std::int64_t number) const {
  return BuildDir(job, number) / "log";
}

tl::expected<std::int64_t, std::string> BuildStore::NextNumber(const std::string& job) {
  if (auto problem = CheckJobName(job); !problem) return tl::unexpected(problem.error());
  fs::path dir = builds_ / job;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return tl::unexpected("cannot create " + dir.string() + ": " + ec.message());

  // One giver at a time, across threads and processes.
  fs::path lock_path = dir / ".lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock) return tl::unexpected(Errno("cannot open", lock_path));
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return tl::unexpected(Errno("cannot lock", lock_path));
  }

  std::int64_t next = 1;
  fs::path counter = dir / "next-number";
  if (auto text = ReadFile(counter)) {
    std::int64_t value = 0;
    auto [end, err] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (err == std::errc() && value > 0 && value < kMaxBuildNumber) next = value;
  }
  // Never below a build that exists (a lost or damaged counter file must not reuse numbers).
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::int64_t value = 0;
    auto [last, err] = std::from_chars(name.data(), name.data() + name.size(), value);
    if (err == std::errc() && last == name.data() + name.size() && value >= next &&
        value < kMaxBuildNumber) {
      next = value + 1;
    }
  }
  if (ec) return tl::unexpected("cannot list " + dir.string() + ": " + ec.message());
  if (next >= kMaxBuildNumber) {
    return tl::unexpected("build numbers of " + job + " are exhausted or " + counter.string() +
                          " is damaged (next would be " + std::to_string(next) + ")");
  }
  if (auto ok = WriteFileAtomically(counter, std::to_string(next + 1) + "\n"); !ok) {
    return tl::unexpected(ok.error());
  }
  fs::create_directories(BuildDir(job, next), ec);
  if (ec)
    return tl::unexpected("cannot create " + BuildDir(job, next).string() + ": " + ec.message());
  return next;
}

tl::expected<void, std::string> BuildStore::Write(const BuildRecord& record) {
  // One writer at a time: a retry of an older version must never land after a newer one.
  std::lock_guard lock(mu_);
  auto written = WriteNow(record);
  auto key = std::make_pair(record.job, record.number);
  if (written) {
    pending_.erase(key);
  } else if (CheckJobName(record.job)) {
    pending_[key] = record;
  }
  return written;
}

tl::expected<void, std::string> BuildStore::RetryPending() {
  std::lock_guard lock(mu_);
  tl::expected<void, std::string> first_error;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (auto written = WriteNow(it->second); written) {
      it = pending_.erase(it);
    } else {
      if (first_error) first_error = written;
      ++it;
    }
  }
  return first_error;
}

std::size_t BuildStore::pending() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

tl::expected<void, std::string> BuildStore::WriteNow(const BuildRecord& record) const {
  if (auto problem = CheckJobName(record.job); !problem) return problem;
  const fs::path path = BuildDir(record.job, record.number) / "build.json";
  auto written = WriteFileAtomically(path, ToJson(record));
  if (!written) {
    // Its folder may be gone (deleted to free space): the build happened, so it is made
    // again for its record.
    std::error_code ec;
    if (fs::create_directories(path.parent_path(), ec) && !ec) {
      written = WriteFileAtomically(path, ToJson(record));
    }
  }
  if (!written) return written;
  fs::path marker = RunningMarker(record.job, record.number);
  if (record.result == Result::kRunning) {
    std::error_code ec;
    fs::create_directories(running_, ec);
    UniqueFd fd(::open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) return tl::unexpected(Errno("cannot create", marker));
  } else if (::unlink(marker.c_str()) != 0 && errno != ENOENT) {
    return tl::unexpected(Errno("cannot remove", marker));
  }
  return {};
}

std::vector<BuildStore::BuildId> BuildStore::Running() const {
  std::vector<BuildId> ids;
  std::error_code ec;
  for (fs::directory_iterator it(running_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    auto at = name.find('@');
    if (at == std::string::npos || at + 1 == name.size()) continue;
    std::int64_t number = 0;
    auto [last, err] = std::from_chars(name.data(), name.data() + at, number);
    if (err != std::errc() || last != name.data() + at || number <= 0) continue;
    ids.push_back({name.substr(at + 1), number});
  }
  return ids;
}

tl::expected<BuildRecord, std::string> BuildStore::Read(const std::string& job,
                                                        std::int64_t number) const {
  if (auto problem = CheckJobName(job); !problem) return tl::unexpected(problem.error());
  {
    // A record waiting to be written is newer than what the disk has.
    std::lock_guard lock(mu_);
    if (auto it = pending_.find(std::make_pair(job, number)); it != pending_.end()) {
      return it->second;
    }
  }
  auto text = ReadFile(BuildDir(job, number) / "build.json");
  if (!text) return tl::unexpected(text.error());
  return ParseBuildRecord(*text);
}

}  // namespace gearrun::runner
