#include "runner/build_log.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(SecretMaskerTest, MasksWholeSecrets) {
  SecretMasker m({"hunter2"});
  std::string out = m.Feed("token=hunter2 and again hunter2.");
  out += m.Flush();
  EXPECT_EQ(out, "token=**** and again ****.");
}

TEST(SecretMaskerTest, MasksASecretSplitAtEveryPoint) {
  const std::string text = "before s3cret-value after s3cret-value";
  for (size_t split = 0; split <= text.size(); ++split) {
    SecretMasker m({"s3cret-value"});
    std::string out = m.Feed(text.substr(0, split));
    out += m.Feed(text.substr(split));
    out += m.Flush();
    EXPECT_EQ(out, "before **** after ****") << "split at " << split;
  }
}

TEST(SecretMaskerTest, MasksASecretFedOneByteAtATime) {
  SecretMasker m({"abc", "abcdef"});
  std::string out;
  for (char c : std::string("xabcdefyabcz")) out += m.Feed(std::string(1, c));
  out += m.Flush();
  EXPECT_EQ(out, "x****y****z");  // the longer secret wins where both start
}

TEST(SecretMaskerTest, OverlappingSecretsAreMaskedAsOne) {
  SecretMasker m({"ab", "bcdef"});
  std::string out = m.Feed("xabcdefy");
  out += m.Flush();
  EXPECT_EQ(out, "x****y");  // neither "cdef" nor "a" of the secrets is left readable
}

TEST(SecretMaskerTest, HoldsBackOnlyWhatMayStartASecret) {
  SecretMasker m({"hunter2"});
  EXPECT_EQ(m.Feed("all done\n"), "all done\n");  // nothing delayed
  EXPECT_EQ(m.Feed("token=hun"), "token=");       // "hun" may be the start of the secret
  EXPECT_EQ(m.Feed("gry\n"), "hungry\n");
}

TEST(SecretMaskerTest, PassesEverythingWhenThereAreNoSecrets) {
  SecretMasker m({"", ""});
  EXPECT_FALSE(m.active());
  EXPECT_EQ(m.Feed(std::string("\0\xff", 2)), std::string("\0\xff", 2));
}

TEST(SecretMaskerTest, APartialSecretAtTheEndIsNotASecret) {
  SecretMasker m({"password"});
  std::string out = m.Feed("pass");
  EXPECT_EQ(out, "");
  EXPECT_EQ(m.Flush(), "pass");
}

TEST(BuildLogTest, WritesOutputAndOwnLinesOnLinesOfTheirOwn) {
  testing::TempDir dir;
  auto log = BuildLog::Open(dir.path() / "log", {});
  ASSERT_TRUE(log);
  log->Line("step 1");
  log->Write("no newline at the end");
  log->Line("step 1 done");
  EXPECT_EQ(testing::ReadFile(dir.path() / "log"),
            "[gearrun] step 1\nno newline at the end\n[gearrun] step 1 done\n");
}

TEST(BuildLogTest, MasksSecretsInOutputAndInItsOwnLines) {
  testing::TempDir dir;
  auto log = BuildLog::Open(dir.path() / "log", {.secrets = {"hunter2"}});
  log->Write("the token is hun");
  log->Write("ter2\n");
  log->Line("parameter value hunter2");
  std::string text = testing::ReadFile(dir.path() / "log");
  EXPECT_THAT(text, Not(HasSubstr("hunter2")));
  EXPECT_EQ(text, "the token is ****\n[gearrun] parameter value ****\n");
}

TEST(BuildLogTest, SecretSplitAroundARunnerLineIsStillMasked) {
  // A background process prints half a secret, the runner writes a line of its own, then
  // the other half arrives: the log must not hold the secret in two pieces.
  testing::TempDir dir;
  auto log = BuildLog::Open(dir.path() / "log", {.secrets = {"hunter2"}});
  log->Write("token=hun");
  log->Line("step 'one' SUCCESS");
  log->Write("ter2\n");
  log->Flush();
  std::string text = testing::ReadFile(dir.path() / "log");
  EXPECT_THAT(text, Not(HasSubstr("hun")));
  EXPECT_EQ(text, "token=\n[gearrun] step 'one' SUCCESS\n****\n");
}

TEST(BuildLogTest, CapDropsOutputWithOneMarkerAndKeepsOwnLines) {
  testing::TempDir dir;
  auto log = BuildLog::Open(dir.path() / "log", {.cap_bytes = 10});
  log->Write("0123456");
  log->Write("789abcdef");
  log->Write("more and more");
  log->Line("step done");
  EXPECT_TRUE(log->capped());
  EXPECT_EQ(testing::ReadFile(dir.path() / "log"),
            "0123456789\n[gearrun] log cap of 10 bytes reached: further output of this build "
            "is dropped (the steps keep running)\n[gearrun] step done\n");
}

TEST(BuildLogTest, TeesToAnotherFd) {
  testing::TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  {
    auto log = BuildLog::Open(dir.path() / "log", {.tee_fd = fds[1]});
    log->Write("hello\n");
  }
  ::close(fds[1]);
  char buf[16] = {};
  EXPECT_EQ(::read(fds[0], buf, sizeof(buf)), 6);
  EXPECT_STREQ(buf, "hello\n");
  ::close(fds[0]);
}

TEST(BuildLogTest, ClosedTeeDoesNotStopTheLog) {
  testing::TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  {
    auto log = BuildLog::Open(dir.path() / "log", {.tee_fd = fds[1]});
    log->Write("one\n");
    log->Write("two\n");
  }
  ::sigaction(SIGPIPE, &old, nullptr);
  ::close(fds[1]);
  EXPECT_EQ(testing::ReadFile(dir.path() / "log"), "one\ntwo\n");
}

TEST(BuildLogTest, AFullTeeNeverBlocksAndSaysWhatItDropped) {
  testing::TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_GE(::fcntl(fds[1], F_SETPIPE_SZ, 8192), 0);  // two pages: poll counts pages
  auto log = BuildLog::Open(dir.path() / "log", {.tee_fd = fds[1]});
  std::string chunk(1000, 'x');
  for (int i = 0; i < 100; ++i) log->Write(chunk);  // 100 KB into a 4 KB pipe nobody reads
  // (Reaching this line at all is the point: a blocking copy would hang here.)
  char buf[8192];
  while (::read(fds[0], buf, sizeof(buf)) == sizeof(buf)) {
  }
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  while (::read(fds[0], buf, sizeof(buf)) > 0) {
  }
  log->Write("after\n");
  std::string copy;
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) copy.append(buf, static_cast<size_t>(n));
  EXPECT_THAT(copy, HasSubstr("bytes not shown here: this output did not keep up"));
  EXPECT_THAT(copy, HasSubstr("after\n"));
  EXPECT_EQ(testing::ReadFile(dir.path() / "log").size(), 100000u + 6);  // the file has everything
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(BuildLogTest, OpenFailsWithAReason) {
  auto log = BuildLog::Open("/nonexistent/dir/log", {});
  ASSERT_FALSE(log);
  EXPECT_THAT(log.error(), HasSubstr("cannot create build log /nonexistent/dir/log"));
}

}  // namespace
}  // namespace gearrun::runner
