#include "runner/build_record.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

using ::testing::HasSubstr;

TEST(BuildStoreTest, NumbersIncreasePerJob) {
  testing::TempDir dir;
  BuildStore store(dir.path());
  EXPECT_EQ(store.NextNumber("a"), 1);
  EXPECT_EQ(store.NextNumber("a"), 2);
  EXPECT_EQ(store.NextNumber("b"), 1);
  EXPECT_EQ(store.NextNumber("a"), 3);
  EXPECT_TRUE(std::filesystem::is_directory(store.BuildDir("a", 3)));
}

TEST(BuildStoreTest, NumbersSurviveARestart) {
  testing::TempDir dir;
  { EXPECT_EQ(BuildStore(dir.path()).NextNumber("a"), 1); }
  { EXPECT_EQ(BuildStore(dir.path()).NextNumber("a"), 2); }
}

TEST(BuildStoreTest, NumbersAreNeverReusedEvenWhenTheCounterIsLost) {
  testing::TempDir dir;
  BuildStore store(dir.path());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store.NextNumber("a"));
  std::filesystem::remove(dir.path() / "builds/a/next-number");
  EXPECT_EQ(store.NextNumber("a"), 6);
  dir.Write("builds/a/next-number", "garbage");
  EXPECT_EQ(store.NextNumber("a"), 7);
}

TEST(BuildStoreTest, NumbersAreUniqueAcrossThreads) {
  testing::TempDir dir;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::int64_t> seen;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      BuildStore store(dir.path());  // each thread its own store, as separate processes would
      for (int i = 0; i < 20; ++i) {
        auto n = store.NextNumber("job");
        std::lock_guard lock(mu);
        EXPECT_TRUE(n && seen.insert(*n).second);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen.size(), 160u);
  EXPECT_EQ(*seen.rbegin(), 160);
}

TEST(BuildStoreTest, RecordRoundTrips) {
  testing::TempDir dir;
  BuildStore store(dir.path());
  auto n = store.NextNumber("guava");
  BuildRecord r{.job = "guava", .number = *n, .result = Result::kAborted, .reason = "why"};
  r.parameters = {{"A", "1"}, {"KEY", "****"}};
  r.steps.push_back({.name = "compile",
                     .result = StepResult::kAborted,
                     .exit_code = -1,
                     .signal = 15,
                     .timed_out = true,
                     .attempts = 2,
                     .duration_ms = 1500});
  r.steps.push_back({.name = "collect", .is_finally = true, .result = StepResult::kSuccess});
  ASSERT_TRUE(store.Write(r));
  auto back = store.Read("guava", *n);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->result, Result::kAborted);
  EXPECT_EQ(back->reason, "why");
  EXPECT_EQ(back->parameters, r.parameters);
  ASSERT_EQ(back->steps.size(), 2u);
  EXPECT_EQ(back->steps[0].signal, 15);
  EXPECT_TRUE(back->steps[0].timed_out);
  EXPECT_EQ(back->steps[0].attempts, 2);
  EXPECT_TRUE(back->steps[1].is_finally);
  EXPECT_EQ(ToJson(*back), ToJson(r));
}

TEST(BuildStoreTest, RunningListsExactlyTheBuildsWhoseRecordSaysRunning) {
  testing::TempDir dir;
  BuildStore store(dir.path());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store.NextNumber("a.b-c"));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(store.NextNumber("z"));
  ASSERT_TRUE(store.Write({.job = "a.b-c", .number = 3, .result = Result::kRunning}));
  ASSERT_TRUE(store.Write({.job = "z", .number = 1, .result = Result::kRunning}));
  ASSERT_TRUE(store.Write({.job = "z", .number = 2, .result = Result::kSuccess}));
  auto running = store.Running();
  ASSERT_EQ(running.size(), 2u);
  std::set<std::string> names;
  for (const auto& id : running) names.insert(id.job + "#" + std::to_string(id.number));
  EXPECT_EQ(names, (std::set<std::string>{"a.b-c#3", "z#1"}));
  ASSERT_TRUE(store.Write({.job = "z", .number = 1, .result = Result::kFailure}));
  ASSERT_EQ(store.Running().size(), 1u);
  EXPECT_EQ(store.Running()[0].job, "a.b-c");
}

TEST(BuildStoreTest, InvalidUtf8InARecordIsReplacedNotFatal) {
  BuildRecord r{.job = "j", .number = 1};
  r.parameters = {{"A", "\xff\xfe"}};
  EXPECT_THAT(ToJson(r), HasSubstr("\"A\""));
}

TEST(BuildStoreTest, NamesThatAreNotJobNamesTouchNoFile) {
  testing::TempDir dir;
  testing::TempDir elsewhere;
  BuildStore store(dir.path() / "state");
  std::string outside = (elsewhere.path() / "x").string();
  for (const std::string& name : {outside, std::string(".."), std::string("a/../../b")}) {
    EXPECT_FALSE(store.NextNumber(name)) << name;
    auto read = store.Read(name, 1);
    ASSERT_FALSE(read) << name;
    EXPECT_THAT(read.error(), HasSubstr("invalid job name"));
    auto written = store.Write({.job = name, .number = 1, .result = Result::kSuccess});
    ASSERT_FALSE(written) << name;
    EXPECT_THAT(written.error(), HasSubstr("invalid job name"));
  }
  EXPECT_TRUE(std::filesystem::is_empty(elsewhere.path()));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "b"));
  EXPECT_EQ(store.pending(), 0u);
}

// A record that cannot be written now is not lost: it is written once the disk takes it,
// also when its folder was deleted meanwhile (to free space), and reads see it meanwhile.
TEST(BuildStoreTest, ARecordThatFailsToWriteIsKeptAndWrittenLater) {
  testing::TempDir dir;
  BuildStore store(dir.path());
  ASSERT_EQ(store.NextNumber("a"), 1);
  ASSERT_TRUE(store.Write({.job = "a", .number = 1, .result = Result::kRunning}));
  // A file where the build's folder was: no write can succeed.
  std::filesystem::remove_all(store.BuildDir("a", 1));
  dir.Write("builds/a/1", "in the way");
  auto failed = store.Write({.job = "a", .number = 1, .result = Result::kSuccess, .reason = "x"});
  ASSERT_FALSE(failed);
  EXPECT_EQ(store.pending(), 1u);
  auto meanwhile = store.Read("a", 1);
  ASSERT_TRUE(meanwhile);
  EXPECT_EQ(meanwhile->result, Result::kSuccess) << "a read sees the newest version";
  EXPECT_FALSE(store.RetryPending());  // still failing
  EXPECT_EQ(store.pending(), 1u);
  // set_description of the finished build: the version kept is changed, not replaced by
  // the RUNNING one on disk.
  auto described = *store.Read("a", 1);
  described.description = "d";
  EXPECT_FALSE(store.Write(described));
  std::filesystem::remove(store.BuildDir("a", 1));  // gone, folder and all
  ASSERT_TRUE(store.RetryPending());
  EXPECT_EQ(store.pending(), 0u);
  auto back = store.Read("a", 1);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->result, Result::kSuccess);
  EXPECT_EQ(back->description, "d");
  EXPECT_TRUE(store.Running().empty());
}

TEST(WriteFileAtomicallyTest, ReplacesWholeAndLeavesNoTemporaryFile) {
  testing::TempDir dir;
  auto path = dir.path() / "f";
  ASSERT_TRUE(WriteFileAtomically(path, "one"));
  ASSERT_TRUE(WriteFileAtomically(path, "two"));
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
  auto missing = WriteFileAtomically(dir.path() / "no/such/dir/f", "x");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error(), HasSubstr("cannot create"));
}

}  // namespace
}  // namespace gearrun::runner
