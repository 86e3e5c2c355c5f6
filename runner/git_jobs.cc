#include "runner/git_jobs.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <system_error>

#include "runner/build_record.h"
#include "runner/git.h"

namespace gearrun::runner {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr auto kStopWait = std::chrono::seconds(10);

std::string Short(const std::string& commit) { return commit.substr(0, 12); }

fs::path Root(const fs::path& state_dir) { return state_dir / "jobs-git"; }

// The commit `good` names, if it came from this URL, ref and path.
std::optional<std::string> ReadGood(const fs::path& root, const JobsFromGit& settings) {
  std::ifstream in(root / "good");
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, false);
  if (!j.is_object() || j.value("url", "") != RedactUrl(settings.url) ||
      j.value("ref", "") != settings.ref || j.value("path", "") != settings.path.string()) {
    return std::nullopt;
  }
  std::string commit = j.value("commit", "");
  if (commit.size() != 40) return std::nullopt;
  return commit;
}

}  // namespace

struct GitJobs::Shared {
  std::mutex mu;  // for stop, poll_now and cv only: never held long
  std::condition_variable cv;
  bool stop = false;
  bool poll_now = false;
  // Held while the definitions change (an update after a fetch); Stop() takes it before it
  // leaves a thread behind, which then sees `stopped` and touches nothing more.
  std::mutex work;
  std::atomic<bool> stopped{false};
  std::promise<void> done;
};

GitJobs::GitJobs(JobsFromGit settings, const fs::path& state_dir, JobRegistry& registry)
    : settings_(std::move(settings)),
      url_(RedactUrl(settings_.url)),
      path_(settings_.path.string()),
      cache_root_(state_dir / "git"),
      root_(Root(state_dir)),
      registry_(registry) {}

GitJobs::~GitJobs() { Stop(); }

std::optional<GitJobs::LastGood> GitJobs::LastGoodJobs(const JobsFromGit& settings,
                                                       const fs::path& state_dir) {
  auto good = ReadGood(Root(state_dir), settings);
  if (!good) return std::nullopt;
  fs::path dir = Root(state_dir) / *good;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  return LastGood{.commit = *good, .dir = dir};
}

JobRegistry::ReloadResult GitJobs::LoadCommit(const fs::path& mirror, const std::string& commit,
                                              bool reuse) {
  const fs::path export_dir = root_ / commit;
  std::error_code ec;
  if (!reuse || !fs::is_directory(export_dir, ec)) {
    // A new export every time (not a folder a killed run may have left half removed).
    fs::create_directories(root_, ec);
    if (auto exported = ExportTree(mirror, commit, export_dir, settings_.path); !exported) {
      JobRegistry::ReloadResult failed;
      failed.errors.push_back({.code = jobs::ErrorCode::kIo, .message = exported.error()});
      return failed;
    }
  }
  auto result = registry_.Reload({export_dir}, commit);
  // Name files as `git show` does: <commit>:<path in the repository>, in messages too (a
  // duplicate names the other file).
  const std::string prefix = export_dir.string() + "/";
  const std::string named = Short(commit) + ":" + (path_.empty() ? "" : path_ + "/");
  auto rename = [&](std::string& text) {
    for (auto at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at)) {
      text.replace(at, prefix.size(), named);
      at += named.size();
    }
  };
  for (auto& e : result.errors) {
    rename(e.file);
    rename(e.message);
  }
  return result;
}

void GitJobs::KeepOnlyCurrent() {
  nlohmann::json good = {
      {"url", url_}, {"ref", settings_.ref}, {"path", path_}, {"commit", current_}};
  auto text = good.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (auto written = WriteFileAtomically(root_ / "good", text); !written) {
    spdlog::warn("cannot record the jobs commit for starting offline: {}", written.error());
  }
  // Its definitions are in memory; the folder is for `gearrun run` and for starting offline.
  std::error_code ec;
  std::vector<fs::path> others;
  for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name != "good" && name != current_) others.push_back(it->path());
  }
  for (const auto& other : others) fs::remove_all(other, ec);
}

bool GitJobs::Update(const fs::path& mirror, const std::string& commit,
                     const std::string& fallback) {
  auto result = LoadCommit(mirror, commit, false);
  if (!result.ok) {
    for (const auto& e : result.errors) spdlog::error("{}", e.ToString());
    spdlog::error(
        "commit {} of the jobs repository has errors; the jobs of commit {} stay in force "
        "[url: {}, errors: {}]",
        commit, fallback.empty() ? "(none)" : fallback, url_, result.errors.size());
    broken_ = commit;
    std::error_code ec;
    if (commit != current_) fs::remove_all(root_ / commit, ec);
    return false;
  }
  spdlog::info(
      "jobs updated to commit {} [jobs: {}, functions: {}, added: {}, removed: {}, url: {}]",
      commit, result.jobs, registry_.current()->functions.size(), result.delta.added.size(),
      result.delta.removed.size(), url_);
  current_ = commit;
  broken_.clear();
  KeepOnlyCurrent();
  return true;
}

tl::expected<GitJobs::Loaded, std::string> GitJobs::Load() {
  const fs::path mirror = MirrorPathFor(cache_root_, settings_.url);
  const std::optional<std::string> good = ReadGood(root_, settings_);
  const std::string fallback = good.value_or("");
  auto fetched = FetchMirror(cache_root_, settings_.url);
  if (fetched) {
    auto commit = ResolveInMirror(mirror, settings_.ref);
    if (!commit) {
      if (!good) return tl::unexpected("jobs repository: " + commit.error());
      spdlog::error("jobs repository: {}; starting from the last good commit {}", commit.error(),
                    *good);
    } else if (Update(mirror, *commit, fallback)) {
      return Loaded{.commit = current_, .jobs = static_cast<int>(registry_.current()->jobs.size())};
    } else if (!good) {
      return tl::unexpected("commit " + *commit + " of the jobs repository " + url_ +
                            " has errors (above), and no earlier commit was loaded on this node "
                            "to fall back to");
    }
  } else {
    fetch_failing_ = true;
    if (!good) {
      return tl::unexpected(fetched.error() +
                            "; and no job definitions from an earlier fetch are on this node to "
                            "start with");
    }
    spdlog::warn("cannot fetch the jobs repository; starting from the last good commit {} [{}]",
                 *good, fetched.error());
  }
  auto result = LoadCommit(mirror, *good, true);
  if (!result.ok) {
    std::string first = result.errors.empty() ? "" : ": " + result.errors.front().ToString();
    return tl::unexpected("the last good commit " + *good + " of the jobs repository " + url_ +
                          " cannot be loaded any more" + first);
  }
  spdlog::info("jobs loaded from the last good commit {} [jobs: {}, url: {}]", *good, result.jobs,
               url_);
  current_ = *good;
  KeepOnlyCurrent();
  return Loaded{.commit = current_, .jobs = result.jobs, .offline = !fetched};
}

void GitJobs::Poll(bool manual, const tl::expected<GitFetchResult, std::string>& fetched) {
  if (!fetched) {
    if (!fetch_failing_ || manual) {
      spdlog::warn("cannot fetch the jobs repository; the jobs of commit {} stay in force [{}]",
                   current_, fetched.error());
    } else {
      spdlog::debug("jobs repository still unreachable [{}]", fetched.error());
    }
    fetch_failing_ = true;
    return;
  }
  if (fetch_failing_) spdlog::info("jobs repository reachable again [url: {}]", url_);
  fetch_failing_ = false;
  auto commit = ResolveInMirror(fetched->mirror, settings_.ref);
  if (!commit) {
    if (commit.error() != broken_ || manual) {
      spdlog::error("jobs repository: {}; the jobs of commit {} stay in force", commit.error(),
                    current_);
    }
    broken_ = commit.error();
    return;
  }
  if (*commit == current_ || (*commit == broken_ && !manual)) {
    auto level = manual ? spdlog::level::info : spdlog::level::debug;
    spdlog::log(level, "jobs repository fetched: no new commit [in force: {}]", current_);
    return;
  }
  if (Update(fetched->mirror, *commit, current_) && changed_) changed_();
}

void GitJobs::Start(std::function<void()> changed) {
  if (thread_.joinable()) return;
  changed_ = std::move(changed);
  shared_ = std::make_shared<Shared>();
  done_ = shared_->done.get_future();
  // Nodes that start together do not all poll the server at the same moment: the first
  // poll comes after a random part of the interval.
  auto first = settings_.poll;
  if (first.count() > 0) {
    std::mt19937_64 random(std::random_device{}());
    first = std::chrono::milliseconds(
        std::uniform_int_distribution<std::int64_t>(first.count() / 2, first.count())(random));
  }
  // The thread keeps its own copies: when Stop() leaves it behind in a fetch, it touches
  // nothing of this object after the fetch returns.
  thread_ = std::thread([this, shared = shared_, url = settings_.url, cache_root = cache_root_,
                         poll = settings_.poll, first] {
    auto next = SteadyClock::now() + first;
    while (true) {
      bool manual = false;
      {
        std::unique_lock lock(shared->mu);
        auto woken = [&] { return shared->stop || shared->poll_now; };
        if (poll.count() > 0) {
          shared->cv.wait_until(lock, next, woken);
        } else {
          shared->cv.wait(lock, woken);
        }
        if (shared->stop) break;
        manual = shared->poll_now;
        shared->poll_now = false;
      }
      next = SteadyClock::now() + poll;
      auto fetched = FetchMirror(cache_root, url);
      std::lock_guard work(shared->work);
      if (shared->stopped) break;
      try {
        Poll(manual, fetched);
      } catch (const std::exception& e) {  // a bug, or the disk: the node goes on
        spdlog::error("updating the jobs failed: {}", e.what());
      }
    }
    shared->done.set_value();
  });
}

void GitJobs::PollNow() {
  if (!shared_) return;
  spdlog::info("fetching the jobs repository now [url: {}]", url_);
  {
    std::lock_guard lock(shared_->mu);
    shared_->poll_now = true;
  }
  shared_->cv.notify_all();
}

bool GitJobs::Stop() {
  if (!thread_.joinable()) return true;
  {
    std::lock_guard lock(shared_->mu);
    shared_->stop = true;
  }
  shared_->cv.notify_all();
  if (done_.wait_for(kStopWait) == std::future_status::ready) {
    thread_.join();
    return true;
  }
  {
    std::lock_guard work(shared_->work);  // an update in progress ends first
    shared_->stopped = true;
  }
  spdlog::warn("a fetch of the jobs repository has not returned in {}s; not waiting for it",
               std::chrono::seconds(kStopWait).count());
  thread_.detach();
  return false;
}

}  // namespace gearrun::runner
