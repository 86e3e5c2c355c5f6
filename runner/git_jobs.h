// GitJobs: a node's job definitions taken from a git repository (node setting
// `jobs: {git: URL, ref: main, path: jobs/, poll: 60s}`), followed as the repository changes.
//
//   GitJobs source(*config.jobs_git, config.node.state_dir, registry);
//   auto first = source.Load();                 // at start: fetch, export, load
//   if (!first) { spdlog::error(first.error()); return 2; }
//   source.Start([&] { worker.JobsChanged(); }); // polls on a thread of its own
//   worker.OnReload([&] { source.PollNow(); });  // SIGHUP: fetch now
//   ...
//   source.Stop();
//
// An update fetches the repository into its mirror (runner/git.h; shared with checkouts of the
// same URL), resolves `ref`, and when that names a new commit, exports the files of `path` (a
// folder) in that commit and reloads the registry from them. A commit whose job files do not all
// validate changes nothing: every error is logged, as "<commit>:<file>:<line>:<column>: <what>"
// (the form `git show` takes), with the commit id, and the definitions in force stay; the same
// broken commit is not reported again. A fetch that fails (remote unreachable) is logged once
// per outage; the definitions in force stay.
//
// On disk, under <state_dir>/jobs-git: the exported files of the commit in force
// (<40 hex digits>; nothing else is kept), and `good`, a JSON file naming the last commit that
// loaded with the URL (without credentials), ref and path it came from. When the remote cannot
// be reached at start, Load() starts from that commit, so a node works offline.
//
// Thread safety: Load() before Start(); PollNow() from any thread, never blocking; Stop() (or
// the destructor) from the thread that called Start(). The registry and the callback must
// outlive Stop().
#pragma once

#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tl/expected.hpp>

#include "runner/config.h"
#include "runner/git.h"
#include "runner/job_registry.h"

namespace gearrun::runner {

class GitJobs {
 public:
  GitJobs(JobsFromGit settings, const std::filesystem::path& state_dir, JobRegistry& registry);
  ~GitJobs();
  GitJobs(const GitJobs&) = delete;
  GitJobs& operator=(const GitJobs&) = delete;

  struct Loaded {
    std::string commit;  // 40 hex digits, now in force
    int jobs = 0;
    bool offline = false;  // the fetch failed: this is the last good commit
  };
  // The first definitions: fetches, then loads the commit `ref` names. When the fetch fails,
  // or that commit's job files have errors (logged), loads the last good commit instead.
  // Errors (one line each, no definitions at all): nothing fetched and nothing from an earlier
  // run, or the commit has errors and there is no good one to fall back to.
  [[nodiscard]] tl::expected<Loaded, std::string> Load();

  // Starts polling: every `poll` (none when 0) and on PollNow(). `changed` runs on the
  // polling thread after new definitions came into force.
  void Start(std::function<void()> changed);
  // Fetches as soon as possible (SIGHUP). Never blocks.
  void PollNow();
  // Stops polling. Waits for a fetch in progress for up to 10 s (libgit2 1.5 has no network
  // timeout); one that takes longer is left behind, and does nothing once it returns. Returns
  // false when it left one behind: the process should then end with _exit (the fetch is still
  // inside libgit2, which exit handlers tear down).
  bool Stop();

  struct LastGood {
    std::string commit;
    std::filesystem::path dir;  // its job files
  };
  // The definitions a node running with `state_dir` last loaded from `settings`' repository
  // (`gearrun run` uses them); nullopt when it has loaded none.
  [[nodiscard]] static std::optional<LastGood> LastGoodJobs(const JobsFromGit& settings,
                                                            const std::filesystem::path& state_dir);

 private:
  struct Shared;
  // Exports and loads `commit`. Returns whether it came into force; logs errors, saying that
  // the definitions of `fallback` stay.
  bool Update(const std::filesystem::path& mirror, const std::string& commit,
              const std::string& fallback);
  // Loads `commit`, exporting it first unless `reuse` and its export is there; errors
  // rewritten to name the commit and its files as in the repository.
  JobRegistry::ReloadResult LoadCommit(const std::filesystem::path& mirror,
                                       const std::string& commit, bool reuse);
  // Records `current_` as the last good commit and removes every other export.
  void KeepOnlyCurrent();
  // One poll's work after its fetch (on the polling thread, holding Shared::work).
  void Poll(bool manual, const tl::expected<GitFetchResult, std::string>& fetched);

  const JobsFromGit settings_;
  const std::string url_;   // without credentials
  const std::string path_;  // settings_.path: "jobs", or "" for the whole repository
  const std::filesystem::path cache_root_;
  const std::filesystem::path root_;  // <state>/jobs-git
  JobRegistry& registry_;
  std::string current_;  // the commit in force
  std::string broken_;   // the last commit found broken (reported once)
  bool fetch_failing_ = false;
  std::function<void()> changed_;
  std::shared_ptr<Shared> shared_;
  std::future<void> done_;
  std::thread thread_;
};

}  // namespace gearrun::runner
