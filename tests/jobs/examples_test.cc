// The example job files ship with gearrun and are what newcomers copy: they must load
// without errors and, together, show every key of the format.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "jobs/loader.h"

namespace gearrun::jobs {
namespace {

TEST(ExamplesTest, ExampleJobsAreValid) {
  auto report = LoadJobs({std::filesystem::path(GEARRUN_SOURCE_DIR) / "examples/jobs"});
  for (const auto& e : report.errors) ADD_FAILURE() << e.ToString();
  EXPECT_GE(report.jobs.size(), 4u);
}

TEST(ExamplesTest, ExampleJobsUseEveryKey) {
  auto report = LoadJobs({std::filesystem::path(GEARRUN_SOURCE_DIR) / "examples/jobs"});
  std::vector<std::string> missing;
  for (const auto& key : AllJobKeys()) {
    if (!report.keys_used.contains(key)) missing.push_back(key);
  }
  EXPECT_THAT(missing, ::testing::IsEmpty()) << "keys no example uses";
}

}  // namespace
}  // namespace gearrun::jobs
