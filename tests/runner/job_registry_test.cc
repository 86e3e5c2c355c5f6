#include "runner/job_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(FunctionDeltaTest, AddedAndRemoved) {
  auto d = DiffFunctions({"build:a", "build:b", "build:b:x"}, {"build:b", "build:c"});
  EXPECT_THAT(d.added, ElementsAre("build:c"));
  EXPECT_THAT(d.removed, ElementsAre("build:a", "build:b:x"));
  EXPECT_TRUE(DiffFunctions({"build:a"}, {"build:a"}).empty());
}

TEST(FunctionDeltaTest, JobOfFunction) {
  EXPECT_EQ(JobOfFunction("build:guava"), "guava");
  EXPECT_EQ(JobOfFunction("build:guava:ubuntu"), "guava");
  EXPECT_EQ(JobOfFunction("stop:build-01"), "");
}

class JobRegistryTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  JobRegistry registry_{{dir_.path()}, jobs::MakeNodeLabels("node", {"ubuntu"})};
};

TEST_F(JobRegistryTest, ReloadSendsOnlyTheDelta) {
  dir_.Write("a.yaml", "name: a\nnode: ubuntu\nsteps: [{run: x}]\n");
  dir_.Write("b.yaml", "name: b\nsteps: [{run: x}]\n");
  auto first = registry_.Reload();
  ASSERT_TRUE(first.ok);
  EXPECT_THAT(first.delta.added, ElementsAre("build:a", "build:a:ubuntu", "build:b"));
  EXPECT_THAT(first.delta.removed, IsEmpty());

  std::filesystem::remove(dir_.path() / "b.yaml");
  dir_.Write("c.yaml", "name: c\nnode: arm\nsteps: [{run: x}]\n---\nname: d\nsteps: [{run: y}]\n");
  auto second = registry_.Reload();
  ASSERT_TRUE(second.ok);
  EXPECT_THAT(second.delta.added, ElementsAre("build:d"));  // c does not match this node
  EXPECT_THAT(second.delta.removed, ElementsAre("build:b"));
  EXPECT_EQ(second.jobs, 3);
}

TEST_F(JobRegistryTest, ABrokenFileChangesNothing) {
  dir_.Write("a.yaml", "name: a\nsteps: [{run: x}]\n");
  ASSERT_TRUE(registry_.Reload().ok);
  auto before = registry_.current();
  dir_.Write("a.yaml", "name: a\nsteps: [{run: x}]\n");
  dir_.Write("new.yaml", "name: new\nsteps: [{run: x}]\n");
  dir_.Write("broken.yaml", "name: broken\nsteps:\n  - run: x\n    retires: 2\n");
  auto result = registry_.Reload();
  EXPECT_FALSE(result.ok);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_THAT(result.errors[0].ToString(), HasSubstr("broken.yaml:4:5: unknown key 'retires'"));
  EXPECT_TRUE(result.delta.empty());
  EXPECT_EQ(registry_.current(), before);  // the very same definitions
  EXPECT_EQ(registry_.current()->FindByFunction("build:new"), nullptr);
  EXPECT_NE(registry_.current()->FindByFunction("build:a"), nullptr);
}

TEST_F(JobRegistryTest, FindByFunction) {
  dir_.Write("a.yaml", "name: a\nnode: ubuntu || arm\nsteps: [{run: x}]\n");
  ASSERT_TRUE(registry_.Reload().ok);
  ASSERT_NE(registry_.current()->FindByFunction("build:a:ubuntu"), nullptr);
  EXPECT_EQ(registry_.current()->FindByFunction("build:a:ubuntu")->name, "a");
  EXPECT_EQ(registry_.current()->FindByFunction("build:a:arm"), nullptr);  // not registered here
  EXPECT_EQ(registry_.current()->FindByFunction("build:zzz"), nullptr);
}

}  // namespace
}  // namespace gearrun::runner
