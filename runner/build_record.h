// What gearrun keeps about each build, and where: the state directory holds
//
//   builds/<job>/next-number        the next number to give out (text)
//   builds/<job>/<number>/build.json  the record (this file's BuildRecord), written atomically
//   builds/<job>/<number>/log         the build log
//   running/<number>@<job>            present while the record says RUNNING, so that a start
//                                     after a crash finds unfinished builds without reading
//                                     every record ever written
//
// Build numbers per job only ever increase and are never reused, also across crashes and
// restarts: a number is written to next-number (and synced) before its build starts, and
// never falls below an existing build directory.
//
// A record that cannot be written (a full or read-only file system) is kept in memory and
// written by RetryPending() once the directory takes writes again, so a result is not lost
// to a passing disk problem (a crash before that leaves the RUNNING record on disk, which
// the next start turns into LOST). Job names are checked (jobs::JobNameProblem) before any
// path is made from one: a name from a request can never point elsewhere.
//
// BuildStore is thread-safe and safe across processes sharing a state directory (numbers
// are given out under an flock).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

namespace gearrun::runner {

// kLost: the runner died while the build ran (found and recorded by the next start).
enum class Result { kRunning, kSuccess, kUnstable, kFailure, kAborted, kNotBuilt, kLost };

// "RUNNING", "SUCCESS", "UNSTABLE", "FAILURE", "ABORTED", "NOT_BUILT", "LOST".
[[nodiscard]] std::string_view ToString(Result result);

enum class StepResult { kSuccess, kFailure, kAborted, kNotRun };
[[nodiscard]] std::string_view ToString(StepResult result);

// The inverses of ToString; nullopt for any other text.
[[nodiscard]] std::optional<Result> ResultFromString(std::string_view text);
[[nodiscard]] std::optional<StepResult> StepResultFromString(std::string_view text);

struct StepRecord {
  std::string name;
  bool is_finally = false;
  StepResult result = StepResult::kNotRun;
  int exit_code = -1;  // of the last attempt; -1 when it did not exit by itself
  int signal = 0;      // that ended the last attempt, 0 when none
  bool timed_out = false;
  int attempts = 0;
  std::int64_t duration_ms = 0;  // all attempts and retry delays
  std::int64_t cpu_ms = 0;
  std::uint64_t peak_rss_bytes = 0;
  int leftovers_killed = 0;
  std::string error;  // why it could not be started, if so
};

struct BuildRecord {
  std::string job;
  std::int64_t number = 0;
  Result result = Result::kRunning;
  std::string reason;  // human-readable; empty for SUCCESS
  std::string node;
  std::vector<std::string> node_labels;
  int executor = 0;
  std::string unique;                             // the Gearman unique id, if any
  std::map<std::string, std::string> parameters;  // secret values replaced by "****"
  std::vector<std::string> dropped_parameters;
  std::string description;  // set_description
  std::string started_at;   // ISO 8601 UTC
  std::string finished_at;
  std::int64_t duration_ms = 0;
  std::vector<StepRecord> steps;  // steps then finally steps, in order
  std::string workspace;
  std::string checkout_commit;  // the commit the job's checkout got, if it has one
  std::string jobs_commit;      // the jobs repository's commit the job came from, if any
  std::string containment;      // "cgroup" or "process-group"
  int leftovers_killed = 0;     // processes still alive at the end of the build
  bool log_capped = false;
  int runner_pid = 0;  // the runner that ran it (to tell a crashed build from a running one)
  // Which process that pid was (runner/recovery.h, ProcessStartId): a pid is reused, and
  // in a container gearrun is PID 1 at every start.
  std::string runner_start;
  // How to find the build's processes should its runner die: the cookie variable its
  // processes carry, and its cgroup directory (cgroup containment only).
  std::string cookie;
  std::string cgroup;
  // What of the build could not be recorded when it ended (its log, its record), with the
  // error; empty when everything was written. A record carrying it was written late, once
  // the state directory could be written again.
  std::string state_error;
};

// Writes `text` to `path` so that readers see the old or the new content, never a part:
// a temporary file, fsync, rename, fsync of the directory.
[[nodiscard]] tl::expected<void, std::string> WriteFileAtomically(const std::filesystem::path& path,
                                                                  std::string_view text);

// Whether files can be made in `dir` now: writes, syncs and removes a small file there.
[[nodiscard]] tl::expected<void, std::string> ProbeWritable(const std::filesystem::path& dir);

[[nodiscard]] std::string ToJson(const BuildRecord& record);
[[nodiscard]] tl::expected<BuildRecord, std::string> ParseBuildRecord(std::string_view json);

class BuildStore {
 public:
  explicit BuildStore(std::filesystem::path state_dir);

  // Gives out the next number of `job` and creates its directory.
  [[nodiscard]] tl::expected<std::int64_t, std::string> NextNumber(const std::string& job);

  [[nodiscard]] std::filesystem::path BuildDir(const std::string& job, std::int64_t number) const;
  [[nodiscard]] std::filesystem::path LogPath(const std::string& job, std::int64_t number) const;

  // Writes the record atomically and keeps the running/ marker in step with its result.
  // On failure the record is also kept for RetryPending().
  [[nodiscard]] tl::expected<void, std::string> Write(const BuildRecord& record);
  // Writes the records whose Write() failed (each made again in its folder if the folder is
  // gone); returns the first error of those that fail again. Writes are serialized, so a
  // retried version never lands after a newer one.
  [[nodiscard]] tl::expected<void, std::string> RetryPending();
  [[nodiscard]] std::size_t pending() const;
  // The record as last written, or as waiting to be written (RetryPending) when it is.
  [[nodiscard]] tl::expected<BuildRecord, std::string> Read(const std::string& job,
                                                            std::int64_t number) const;

  struct BuildId {
    std::string job;
    std::int64_t number = 0;
  };
  // The builds whose last written record said RUNNING (their running/ markers).
  [[nodiscard]] std::vector<BuildId> Running() const;

 private:
  [[nodiscard]] std::filesystem::path RunningMarker(const std::string& job,
                                                    std::int64_t number) const;
  [[nodiscard]] tl::expected<void, std::string> WriteNow(const BuildRecord& record) const;

  std::filesystem::path builds_;
  std::filesystem::path running_;
  mutable std::mutex mu_;
  // Records whose write failed, by (job, number): the newest version of each.
  std::map<std::pair<std::string, std::int64_t>, BuildRecord> pending_;
};

}  // namespace gearrun::runner
