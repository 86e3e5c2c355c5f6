#include "runner/workspace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

TEST(WorkspaceTest, ReusedBetweenBuilds) {
  testing::TempDir dir;
  {
    auto ws = Workspace::Acquire(dir.path(), "guava", WorkspaceClean::kKeep);
    ASSERT_TRUE(ws);
    EXPECT_EQ(ws->path(), dir.path() / "guava");
    dir.Write("guava/kept.txt", "x");
  }
  auto again = Workspace::Acquire(dir.path(), "guava", WorkspaceClean::kKeep);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->path(), dir.path() / "guava");
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "guava/kept.txt"));
}

TEST(WorkspaceTest, ConcurrentBuildsGetAtTwoAtThree) {
  testing::TempDir dir;
  auto a = Workspace::Acquire(dir.path(), "guava", WorkspaceClean::kKeep);
  auto b = Workspace::Acquire(dir.path(), "guava", WorkspaceClean::kKeep);
  auto c = Workspace::Acquire(dir.path(), "guava", WorkspaceClean::kKeep);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->path(), dir.path() / "guava");
  EXPECT_EQ(b->path(), dir.path() / "guava@2");
  EXPECT_EQ(c->path(), dir.path() / "guava@3");
  // Released ones are taken again first.
  { auto drop = std::move(*b); }
  auto d = Workspace::Acquire(dir.path(), "guava", WorkspaceClean::kKeep);
  EXPECT_EQ(d->path(), dir.path() / "guava@2");
}

TEST(WorkspaceTest, CleanEmptiesTheFolderButKeepsIt) {
  testing::TempDir dir;
  dir.Write("guava/a.txt", "x");
  dir.Write("guava/sub/b.txt", "x");
  dir.Write("guava/.hidden", "x");
  auto outside = dir.Write("outside/keep.txt", "precious");
  std::filesystem::create_symlink(outside.parent_path(), dir.path() / "guava/link");
  auto ws = Workspace::Acquire(dir.path(), "guava", WorkspaceClean::kEmpty);
  ASSERT_TRUE(ws);
  EXPECT_TRUE(std::filesystem::is_empty(ws->path()));
  // A link is removed, not followed: what it points at survives.
  EXPECT_TRUE(std::filesystem::exists(outside));
}

TEST(WorkspaceTest, UncreatableRootIsAnError) {
  testing::TempDir dir;
  dir.Write("file", "x");
  auto ws = Workspace::Acquire(dir.path() / "file", "guava", WorkspaceClean::kKeep);
  ASSERT_FALSE(ws);
  EXPECT_THAT(ws.error(), ::testing::HasSubstr("cannot create workspace"));
}

}  // namespace
}  // namespace gearrun::runner
