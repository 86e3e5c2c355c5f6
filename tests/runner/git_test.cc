#include "runner/git.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/command.h"
#include "tests/support/gearman.h"

namespace gearrun::runner {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// Real repositories made with the git CLI, isolated from the machine's and the user's git
// configuration, and served as file:// URLs (or through git daemon).
class GitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(tmp_ / "home");
    MakeSource();
  }

  // Runs git in `dir`; the test fails when git does. Returns its output, trimmed.
  std::string Git(const fs::path& dir, std::vector<std::string> args) {
    auto result = RunGit(dir, std::move(args));
    EXPECT_EQ(result.exit_code, 0) << result.err;
    std::string out = result.out;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }

  testing::CommandResult RunGit(const fs::path& dir, std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/git",
                                     "-C",
                                     dir.string(),
                                     "-c",
                                     "user.name=Gearrun Test",
                                     "-c",
                                     "user.email=test@gearrun.invalid",
                                     "-c",
                                     "init.defaultBranch=main",
                                     "-c",
                                     "protocol.file.allow=always"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCommand(argv, Isolated());
  }

  // The git CLI sees the test's own HOME and not the machine's git configuration.
  testing::CommandOptions Isolated() const {
    return {.env = {{"HOME", (tmp_ / "home").string()},
                    {"GIT_CONFIG_NOSYSTEM", "1"},
                    {"GIT_TERMINAL_PROMPT", "0"}}};
  }

  std::string Commit(const fs::path& repo, const std::string& message) {
    Git(repo, {"add", "-A"});
    Git(repo, {"commit", "-q", "-m", message});
    return Git(repo, {"rev-parse", "HEAD"});
  }

  // src: main (first, second), an annotated tag v1 on first, a branch feature with a
  // lightweight tag light, and refs/changes/01/1/1 on a commit no branch or tag reaches.
  void MakeSource() {
    src_ = tmp_ / "src";
    fs::create_directories(src_);
    Git(src_, {"init", "-q"});
    tmp_.Write("src/a.txt", "one\n");
    tmp_.Write("src/dir/b.txt", "bee\n");
    auto script = tmp_.Write("src/run.sh", "#!/bin/sh\necho hi\n");
    fs::permissions(script, fs::perms::owner_exec, fs::perm_options::add);
    fs::create_symlink("a.txt", src_ / "link");
    first_ = Commit(src_, "first");
    Git(src_, {"tag", "-a", "v1", "-m", "release 1"});
    tmp_.Write("src/a.txt", "two\n");
    second_ = Commit(src_, "second");
    Git(src_, {"checkout", "-q", "-b", "feature"});
    tmp_.Write("src/feature.txt", "feature\n");
    feature_ = Commit(src_, "feature");
    Git(src_, {"tag", "light"});
    Git(src_, {"checkout", "-q", "--detach", "main"});
    tmp_.Write("src/change.txt", "change\n");
    change_ = Commit(src_, "a change under review");
    Git(src_, {"update-ref", "refs/changes/01/1/1", change_});
    Git(src_, {"checkout", "-q", "main"});
    url_ = "file://" + src_.string();
  }

  GitCheckoutRequest Request(const std::string& ref, const std::string& dest = "dest") {
    return {.url = url_, .ref = ref, .dest = tmp_ / dest};
  }

  // Whether dest is a clean working tree of `commit`, on a detached HEAD, in git's own eyes.
  void ExpectCheckedOut(const fs::path& dest, const std::string& commit) {
    EXPECT_EQ(Git(dest, {"rev-parse", "HEAD"}), commit);
    EXPECT_NE(RunGit(dest, {"symbolic-ref", "-q", "HEAD"}).exit_code, 0) << "HEAD not detached";
    EXPECT_EQ(Git(dest, {"status", "--porcelain", "--untracked-files=no"}), "");
  }

  testing::TempDir tmp_;
  fs::path src_;
  std::string url_;
  std::string first_, second_, feature_, change_;
  fs::path cache_ = tmp_ / "cache";
};

TEST_F(GitTest, ChecksOutABranch) {
  auto checkout = CheckoutFromMirror(cache_, Request("feature"));
  ASSERT_TRUE(checkout) << checkout.error();
  EXPECT_EQ(checkout->commit, feature_);
  ExpectCheckedOut(tmp_ / "dest", feature_);
  EXPECT_EQ(testing::ReadFile(tmp_ / "dest/a.txt"), "two\n");
  EXPECT_EQ(testing::ReadFile(tmp_ / "dest/feature.txt"), "feature\n");
  EXPECT_EQ(fs::read_symlink(tmp_ / "dest/link"), "a.txt");
  EXPECT_NE(fs::status(tmp_ / "dest/run.sh").permissions() & fs::perms::owner_exec,
            fs::perms::none);
  // Like a clone: origin's branches and the tags, but no local branch to go stale.
  EXPECT_EQ(Git(tmp_ / "dest", {"remote", "get-url", "origin"}), url_);
  EXPECT_EQ(Git(tmp_ / "dest", {"rev-parse", "origin/main"}), second_);
  EXPECT_EQ(Git(tmp_ / "dest", {"rev-parse", "v1^{commit}"}), first_);
  // The mirror's object files are shared (hard links), not copied.
  size_t linked = 0;
  for (auto& entry : fs::recursive_directory_iterator(tmp_ / "dest/.git/objects")) {
    if (entry.is_regular_file() && entry.hard_link_count() > 1) ++linked;
  }
  EXPECT_GT(linked, 0U);
  EXPECT_EQ(Git(tmp_ / "dest", {"branch", "--list"}),
            "* (HEAD detached at " + feature_.substr(0, 7) + ")");
}

TEST_F(GitTest, ChecksOutTags) {
  auto annotated = CheckoutFromMirror(cache_, Request("v1", "annotated"));
  ASSERT_TRUE(annotated) << annotated.error();
  EXPECT_EQ(annotated->commit, first_);
  ExpectCheckedOut(tmp_ / "annotated", first_);
  EXPECT_EQ(testing::ReadFile(tmp_ / "annotated/a.txt"), "one\n");

  auto lightweight = CheckoutFromMirror(cache_, Request("light", "lightweight"));
  ASSERT_TRUE(lightweight) << lightweight.error();
  EXPECT_EQ(lightweight->commit, feature_);
  ExpectCheckedOut(tmp_ / "lightweight", feature_);
}

TEST_F(GitTest, ChecksOutACommitId) {
  auto checkout = CheckoutFromMirror(cache_, Request(first_));
  ASSERT_TRUE(checkout) << checkout.error();
  EXPECT_EQ(checkout->commit, first_);
  ExpectCheckedOut(tmp_ / "dest", first_);
  EXPECT_FALSE(fs::exists(tmp_ / "dest/feature.txt"));
  // One that only a refs/changes ref reaches, given by id.
  auto change = CheckoutFromMirror(cache_, Request(change_, "change"));
  ASSERT_TRUE(change) << change.error();
  ExpectCheckedOut(tmp_ / "change", change_);
  EXPECT_EQ(testing::ReadFile(tmp_ / "change/change.txt"), "change\n");
}

TEST_F(GitTest, ChecksOutAFullRef) {
  auto checkout = CheckoutFromMirror(cache_, Request("refs/changes/01/1/1"));
  ASSERT_TRUE(checkout) << checkout.error();
  EXPECT_EQ(checkout->commit, change_);
  ExpectCheckedOut(tmp_ / "dest", change_);
}

TEST_F(GitTest, ChecksOutAnExpression) {
  auto checkout = CheckoutFromMirror(cache_, Request("main~1"));
  ASSERT_TRUE(checkout) << checkout.error();
  EXPECT_EQ(checkout->commit, first_);
  auto abbreviated = CheckoutFromMirror(cache_, Request(feature_.substr(0, 10), "short"));
  ASSERT_TRUE(abbreviated) << abbreviated.error();
  EXPECT_EQ(abbreviated->commit, feature_);
}

TEST_F(GitTest, EmptyRefIsTheRemotesDefaultBranch) {
  auto checkout = CheckoutFromMirror(cache_, Request(""));
  ASSERT_TRUE(checkout) << checkout.error();
  EXPECT_EQ(checkout->commit, second_);
  // The remote's HEAD, not a guess: point it at feature.
  Git(src_, {"symbolic-ref", "HEAD", "refs/heads/feature"});
  auto moved = CheckoutFromMirror(cache_, Request("", "moved"));
  ASSERT_TRUE(moved) << moved.error();
  EXPECT_EQ(moved->commit, feature_);
}

TEST_F(GitTest, UnknownRefOrCommitIsAnErrorNamingTheUrl) {
  auto ref = CheckoutFromMirror(cache_, Request("no-such-branch"));
  ASSERT_FALSE(ref);
  RecordProperty("error", ref.error());
  EXPECT_THAT(ref.error(), HasSubstr("ref 'no-such-branch' not found in " + url_));
  const std::string missing = "0123456789abcdef0123456789abcdef01234567";
  auto commit = CheckoutFromMirror(cache_, Request(missing));
  ASSERT_FALSE(commit);
  EXPECT_EQ(commit.error(), "commit " + missing + " not found in " + url_);
  EXPECT_FALSE(fs::exists(tmp_ / "dest"));
}

TEST_F(GitTest, SecondCheckoutIntoTheSameDestFollowsTheBranch) {
  fs::path dest = tmp_ / "dest";
  ASSERT_TRUE(CheckoutFromMirror(cache_, Request("main")));
  // What a build may leave behind: a changed and a deleted tracked file, an untracked one.
  tmp_.Write("dest/a.txt", "changed by a build\n");
  fs::remove(dest / "dir/b.txt");
  tmp_.Write("dest/untracked.txt", "kept\n");
  tmp_.Write("src/a.txt", "three\n");
  std::string third = Commit(src_, "third");

  auto again = CheckoutFromMirror(cache_, Request("main"));
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(again->commit, third);
  ExpectCheckedOut(dest, third);
  EXPECT_EQ(testing::ReadFile(dest / "a.txt"), "three\n");
  EXPECT_EQ(testing::ReadFile(dest / "dir/b.txt"), "bee\n");
  EXPECT_EQ(testing::ReadFile(dest / "untracked.txt"), "kept\n");
  EXPECT_EQ(Git(dest, {"rev-parse", "origin/main"}), third);

  // A new commit that no branch or tag reaches, into the same reused dest: fetching origin's
  // branches does not bring it, so it is copied from the mirror on its own.
  Git(src_, {"checkout", "-q", "--detach", "main"});
  tmp_.Write("src/change.txt", "another change\n");
  std::string change = Commit(src_, "another change under review");
  Git(src_, {"update-ref", "refs/changes/02/2/1", change});
  Git(src_, {"checkout", "-q", "main"});
  auto review = CheckoutFromMirror(cache_, Request("refs/changes/02/2/1"));
  ASSERT_TRUE(review) << review.error();
  ExpectCheckedOut(dest, change);
  EXPECT_EQ(testing::ReadFile(dest / "change.txt"), "another change\n");
  EXPECT_EQ(Git(dest, {"fsck", "--no-dangling"}), "");
}

TEST_F(GitTest, DestNeitherEmptyNorARepositoryIsAnError) {
  tmp_.Write("dest/leftover.txt", "x");
  auto checkout = CheckoutFromMirror(cache_, Request("main"));
  ASSERT_FALSE(checkout);
  EXPECT_THAT(checkout.error(), HasSubstr("neither empty nor a git repository"));
  EXPECT_THAT(checkout.error(), HasSubstr((tmp_ / "dest").string()));
  EXPECT_FALSE(fs::exists(tmp_ / "dest/a.txt"));
}

TEST_F(GitTest, SecondCheckoutOfTheSameUrlFetchesNothingNew) {
  auto first = CheckoutFromMirror(cache_, Request("main", "one"));
  ASSERT_TRUE(first) << first.error();
  EXPECT_GT(first->received_objects, 0U);
  auto second = CheckoutFromMirror(cache_, Request("main", "two"));
  ASSERT_TRUE(second) << second.error();
  EXPECT_EQ(second->mirror, first->mirror);
  EXPECT_EQ(second->received_objects, 0U);

  // A new commit (one new file: a commit, a tree and a blob) fetches only that.
  tmp_.Write("src/new.txt", "new\n");
  std::string third = Commit(src_, "third");
  auto fetch = FetchMirror(cache_, url_);
  ASSERT_TRUE(fetch) << fetch.error();
  RecordProperty("first_fetch_objects", std::to_string(first->received_objects));
  RecordProperty("incremental_fetch_objects", std::to_string(fetch->received_objects));
  EXPECT_GT(fetch->received_objects, 0U);
  EXPECT_LT(fetch->received_objects, first->received_objects);
  auto resolved = ResolveInMirror(fetch->mirror, "main");
  ASSERT_TRUE(resolved) << resolved.error();
  EXPECT_EQ(*resolved, third);
}

TEST_F(GitTest, KnownCommitIdNeedsNoRemote) {
  ASSERT_TRUE(CheckoutFromMirror(cache_, Request("main", "one")));
  fs::rename(src_, tmp_ / "gone");
  auto offline = CheckoutFromMirror(cache_, Request(first_, "two"));
  ASSERT_TRUE(offline) << offline.error();
  ExpectCheckedOut(tmp_ / "two", first_);
  auto branch = CheckoutFromMirror(cache_, Request("main", "three"));
  ASSERT_FALSE(branch);
  EXPECT_THAT(branch.error(), HasSubstr("cannot fetch " + url_));
}

TEST_F(GitTest, MirrorDropsRefsTheRemoteDeletedButKeepsTheirCommits) {
  auto fetch = FetchMirror(cache_, url_);
  ASSERT_TRUE(fetch) << fetch.error();
  ASSERT_TRUE(ResolveInMirror(fetch->mirror, "feature"));
  Git(src_, {"branch", "-D", "-q", "feature"});
  Git(src_, {"tag", "-d", "light"});
  ASSERT_TRUE(FetchMirror(cache_, url_));
  auto gone = ResolveInMirror(fetch->mirror, "feature");
  ASSERT_FALSE(gone);
  EXPECT_THAT(gone.error(), HasSubstr("ref 'feature' not found in mirror"));
  auto by_id = ResolveInMirror(fetch->mirror, feature_);
  ASSERT_TRUE(by_id) << by_id.error();
  EXPECT_EQ(*by_id, feature_);
  EXPECT_EQ(*ResolveInMirror(fetch->mirror, "v1"), first_);
  EXPECT_EQ(*ResolveInMirror(fetch->mirror, "refs/changes/01/1/1"), change_);
}

TEST_F(GitTest, HonoursInsteadOfFromTheGitConfiguration) {
  // The mirror's own config is the one place a test can set it without touching $HOME.
  const std::string url = "gearrun-test:src";
  fs::path mirror = MirrorPathFor(cache_, url);
  Git(tmp_.path(), {"init", "-q", "--bare", mirror.string()});
  Git(mirror, {"config", "url.file://" + tmp_.path().string() + "/.insteadOf", "gearrun-test:"});
  auto checkout = CheckoutFromMirror(cache_, {.url = url, .ref = "main", .dest = tmp_ / "dest"});
  ASSERT_TRUE(checkout) << checkout.error();
  EXPECT_EQ(checkout->commit, second_);
}

TEST_F(GitTest, ConcurrentCheckoutsOfOneUrlAllSucceed) {
  constexpr int kThreads = 4;
  std::vector<tl::expected<GitCheckoutResult, std::string>> results(
      kThreads, tl::unexpected(std::string("not run")));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] = CheckoutFromMirror(
          cache_, Request(i % 2 == 0 ? "main" : "v1", "dest" + std::to_string(i)));
    });
  }
  for (auto& thread : threads) thread.join();
  size_t fetched = 0;
  for (int i = 0; i < kThreads; ++i) {
    const auto& result = results[static_cast<size_t>(i)];
    ASSERT_TRUE(result) << result.error();
    const std::string& expected = i % 2 == 0 ? second_ : first_;
    EXPECT_EQ(result->commit, expected);
    ExpectCheckedOut(tmp_ / ("dest" + std::to_string(i)), expected);
    if (result->received_objects > 0) ++fetched;
  }
  // One of them fetched everything; the others found it already there.
  EXPECT_EQ(fetched, 1U);
}

TEST_F(GitTest, UnreachableFileRemoteIsAClearError) {
  auto checkout = CheckoutFromMirror(
      cache_, {.url = "file:///nonexistent/repo.git", .ref = "main", .dest = tmp_ / "dest"});
  ASSERT_FALSE(checkout);
  RecordProperty("error", checkout.error());
  EXPECT_THAT(checkout.error(), HasSubstr("cannot fetch file:///nonexistent/repo.git"));
  EXPECT_THAT(checkout.error(), HasSubstr("/nonexistent/repo.git"));
  EXPECT_EQ(checkout.error().find('\n'), std::string::npos);
  // No mirror is left behind for it.
  EXPECT_FALSE(fs::exists(MirrorPathFor(cache_, "file:///nonexistent/repo.git")));
}

TEST_F(GitTest, UnreachableGitDaemonIsAClearError) {
  int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  const std::string url = "git://127.0.0.1:" + std::to_string(port) + "/x";
  auto start = std::chrono::steady_clock::now();
  auto checkout = CheckoutFromMirror(cache_, {.url = url, .ref = "main", .dest = tmp_ / "dest"});
  ASSERT_FALSE(checkout);
  RecordProperty("error", checkout.error());
  EXPECT_THAT(checkout.error(), HasSubstr("cannot fetch " + url));
  EXPECT_THAT(checkout.error(), HasSubstr("127.0.0.1"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(GitTest, CredentialsAreRedactedInErrors) {
  const std::string url = "https://user:secret@127.0.0.1:1/x.git";
  auto checkout = CheckoutFromMirror(cache_, {.url = url, .ref = "main", .dest = tmp_ / "dest"});
  ASSERT_FALSE(checkout);
  RecordProperty("error", checkout.error());
  EXPECT_THAT(checkout.error(), HasSubstr("https://127.0.0.1:1/x.git"));
  EXPECT_THAT(checkout.error(), Not(HasSubstr("secret")));
  EXPECT_THAT(checkout.error(), Not(HasSubstr("user")));
  auto fetch = FetchMirror(cache_, url);
  ASSERT_FALSE(fetch);
  EXPECT_THAT(fetch.error(), Not(HasSubstr("secret")));
}

TEST_F(GitTest, ExportTreeWritesExactlyTheFilesOfTheCommit) {
  auto fetch = FetchMirror(cache_, url_);
  ASSERT_TRUE(fetch) << fetch.error();
  fs::path out = tmp_ / "exports/jobs";
  ASSERT_TRUE(ExportTree(fetch->mirror, "feature", out));
  auto files = [&] {
    std::set<std::string> names;
    for (auto& entry : fs::recursive_directory_iterator(out)) {
      names.insert(entry.path().lexically_relative(out).string());
    }
    return names;
  };
  EXPECT_EQ(files(),
            (std::set<std::string>{"a.txt", "dir", "dir/b.txt", "feature.txt", "link", "run.sh"}));
  EXPECT_EQ(testing::ReadFile(out / "a.txt"), "two\n");
  EXPECT_EQ(fs::read_symlink(out / "link"), "a.txt");
  EXPECT_NE(fs::status(out / "run.sh").permissions() & fs::perms::owner_exec, fs::perms::none);
  EXPECT_EQ(fs::status(out / "a.txt").permissions() & fs::perms::owner_exec, fs::perms::none);

  // Replaced as a whole: what the new commit does not have is gone.
  auto again = ExportTree(fetch->mirror, first_, out);
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(files(), (std::set<std::string>{"a.txt", "dir", "dir/b.txt", "link", "run.sh"}));
  EXPECT_EQ(testing::ReadFile(out / "a.txt"), "one\n");
  // No temporary folder left next to it.
  std::vector<std::string> siblings;
  for (auto& entry : fs::directory_iterator(out.parent_path())) {
    siblings.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(siblings, std::vector<std::string>{"jobs"});

  auto missing = ExportTree(fetch->mirror, "no-such-ref", out);
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error(), HasSubstr("no-such-ref"));
  EXPECT_EQ(testing::ReadFile(out / "a.txt"), "one\n");
}

TEST_F(GitTest, ChecksOutSubmodulesRecursively) {
  fs::path lib = tmp_ / "lib";
  fs::create_directories(lib);
  Git(lib, {"init", "-q"});
  tmp_.Write("lib/lib.txt", "library\n");
  std::string lib_commit = Commit(lib, "lib");
  Git(src_, {"submodule", "add", "-q", "../lib", "vendor/lib"});
  std::string with_submodule = Commit(src_, "add lib");
  tmp_.Write("lib/lib.txt", "library, later\n");
  Commit(lib, "lib moves on");

  auto without = CheckoutFromMirror(cache_, Request("main", "plain"));
  ASSERT_TRUE(without) << without.error();
  EXPECT_FALSE(fs::exists(tmp_ / "plain/vendor/lib/lib.txt"));

  GitCheckoutRequest request = Request("main");
  request.submodules = true;
  auto checkout = CheckoutFromMirror(cache_, request);
  ASSERT_TRUE(checkout) << checkout.error();
  EXPECT_EQ(checkout->commit, with_submodule);
  // At the commit the superproject records, not the submodule's newest.
  EXPECT_EQ(testing::ReadFile(tmp_ / "dest/vendor/lib/lib.txt"), "library\n");
  EXPECT_EQ(Git(tmp_ / "dest/vendor/lib", {"rev-parse", "HEAD"}), lib_commit);
  EXPECT_EQ(Git(tmp_ / "dest", {"status", "--porcelain"}), "");
  // Initialized and at the recorded commit in `git submodule`'s eyes too (no '-' or '+').
  EXPECT_THAT(Git(tmp_ / "dest", {"submodule", "status"}),
              ::testing::StartsWith(" " + lib_commit + " vendor/lib"));
  // Again, into the same dest: reused, still right.
  auto again = CheckoutFromMirror(cache_, request);
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(Git(tmp_ / "dest/vendor/lib", {"rev-parse", "HEAD"}), lib_commit);
}

bool Listening(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

TEST_F(GitTest, ChecksOutThroughGitDaemon) {
  int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  // git-daemon itself (not `git daemon`, whose child would outlive the kill at the end).
  testing::BackgroundCommand daemon(
      {"/usr/lib/git-core/git-daemon", "--reuseaddr", "--base-path=" + tmp_.path().string(),
       "--export-all", "--listen=127.0.0.1", "--port=" + std::to_string(port),
       tmp_.path().string()},
      Isolated());
  ASSERT_TRUE(testing::WaitFor([&] { return Listening(port); })) << daemon.err();
  // Credentials in a git:// URL are meaningless to the daemon, but must not reach the disk.
  const std::string url = "git://user:secret@127.0.0.1:" + std::to_string(port) + "/src";

  auto checkout = CheckoutFromMirror(cache_, {.url = url, .ref = "v1", .dest = tmp_ / "dest"});
  ASSERT_TRUE(checkout) << checkout.error() << "\n" << daemon.err();
  EXPECT_EQ(checkout->commit, first_);
  EXPECT_GT(checkout->received_objects, 0U);
  ExpectCheckedOut(tmp_ / "dest", first_);
  auto change =
      CheckoutFromMirror(cache_, {.url = url, .ref = "refs/changes/01/1/1", .dest = tmp_ / "dest"});
  ASSERT_TRUE(change) << change.error();
  EXPECT_EQ(change->received_objects, 0U);
  ExpectCheckedOut(tmp_ / "dest", change_);

  tmp_.Write("src/new.txt", "new\n");
  Commit(src_, "third");
  auto fetch = FetchMirror(cache_, url);
  ASSERT_TRUE(fetch) << fetch.error();
  RecordProperty("incremental_fetch_objects", std::to_string(fetch->received_objects));
  EXPECT_EQ(fetch->received_objects, 3U);  // the commit, its tree, the new blob

  EXPECT_THAT(testing::ReadFile(checkout->mirror / "config"), Not(HasSubstr("secret")));
  EXPECT_THAT(testing::ReadFile(tmp_ / "dest/.git/config"), Not(HasSubstr("secret")));
  EXPECT_EQ(Git(tmp_ / "dest", {"remote", "get-url", "origin"}),
            "git://127.0.0.1:" + std::to_string(port) + "/src");
}

TEST(GitRedactUrlTest, RemovesUserInfo) {
  EXPECT_EQ(RedactUrl("https://user:secret@host/x.git"), "https://host/x.git");
  EXPECT_EQ(RedactUrl("https://ghp_token@host:8443/x.git"), "https://host:8443/x.git");
  EXPECT_EQ(RedactUrl("https://us%40er:p%40ss@host/x"), "https://host/x");
  EXPECT_EQ(RedactUrl("https://user:p@ss@host/x"), "https://host/x");
  EXPECT_EQ(RedactUrl("ssh://git@host/x.git"), "ssh://host/x.git");
  EXPECT_EQ(RedactUrl("https://@host/x"), "https://host/x");
}

TEST(GitRedactUrlTest, KeepsUrlsWithoutUserInfo) {
  EXPECT_EQ(RedactUrl("https://host/x.git"), "https://host/x.git");
  EXPECT_EQ(RedactUrl("https://host/@scope/x.git"), "https://host/@scope/x.git");
  EXPECT_EQ(RedactUrl("git@github.com:org/x.git"), "git@github.com:org/x.git");
  EXPECT_EQ(RedactUrl("file:///tmp/x"), "file:///tmp/x");
  EXPECT_EQ(RedactUrl("/tmp/x"), "/tmp/x");
  EXPECT_EQ(RedactUrl(""), "");
}

TEST(GitMirrorPathTest, OnePerUrlWhateverTheCredentials) {
  fs::path root = "/cache";
  fs::path plain = MirrorPathFor(root, "https://host/org/guava.git");
  EXPECT_EQ(plain.parent_path(), root);
  EXPECT_THAT(plain.filename().string(), ::testing::MatchesRegex("guava-[0-9a-f]{16}"));
  EXPECT_EQ(MirrorPathFor(root, "https://user:secret@host/org/guava.git"), plain);
  EXPECT_EQ(MirrorPathFor(root, "https://host/org/guava.git/"), plain);
  EXPECT_NE(MirrorPathFor(root, "https://host/other/guava.git"), plain);
  EXPECT_THAT(MirrorPathFor(root, "git@host:we ird/na$me").filename().string(),
              ::testing::MatchesRegex("na_me-[0-9a-f]{16}"));
  EXPECT_THAT(MirrorPathFor(root, "/").filename().string(),
              ::testing::MatchesRegex("repo-[0-9a-f]{16}"));
}

// A secret in a URL never shows in the mirror's name, and two repositories whose URLs differ
// only in a secret value get two mirrors (masked alike, they shared one).
TEST(GitMirrorPathTest, ASecretInTheUrlNamesNothingAndMixesNothing) {
  testing::TempDir dir;
  fs::path root = dir.path() / "git";
  fs::path one = MirrorPathFor(root, "https://host/s3cretA.git", {"s3cretA"});
  fs::path two = MirrorPathFor(root, "https://host/s3cretB.git", {"s3cretB"});
  EXPECT_NE(one, two);
  EXPECT_THAT(one.filename().string(), ::testing::MatchesRegex("____-[0-9a-f]{16}"));
  EXPECT_EQ(one.string().find("s3cret"), std::string::npos);
  EXPECT_EQ(MirrorPathFor(root, "https://host/s3cretA.git", {"s3cretA"}), one);  // stable
  auto mode = fs::status(root / ".mirror-key").permissions();
  EXPECT_EQ(mode & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
  // The key makes the hash: the same URL in another cache is named otherwise.
  testing::TempDir other;
  EXPECT_NE(MirrorPathFor(other.path(), "https://host/s3cretA.git", {"s3cretA"}).filename(),
            one.filename());
}

}  // namespace
}  // namespace gearrun::runner
