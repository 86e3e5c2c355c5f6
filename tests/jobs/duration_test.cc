#include "jobs/duration.h"

#include <gtest/gtest.h>

namespace gearrun::jobs {
namespace {

using std::chrono::milliseconds;

TEST(DurationTest, ParsesEveryDocumentedForm) {
  EXPECT_EQ(ParseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(ParseDuration("10s"), milliseconds(10'000));
  EXPECT_EQ(ParseDuration("5m"), milliseconds(300'000));
  EXPECT_EQ(ParseDuration("2h"), milliseconds(7'200'000));
  EXPECT_EQ(ParseDuration("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(ParseDuration("1m30s500ms"), milliseconds(90'500));
  EXPECT_EQ(ParseDuration("90"), milliseconds(90'000));
  EXPECT_EQ(ParseDuration("1.5"), milliseconds(1'500));
  EXPECT_EQ(ParseDuration("1.5s"), milliseconds(1'500));
  EXPECT_EQ(ParseDuration("0"), milliseconds(0));
}

TEST(DurationTest, RejectsMalformedWithAHint) {
  for (const char* bad : {"", "-5s", "5x", "s", "1h1h", "30m1h", "1h30", "abc", "5 s", "1..5s"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.has_value()) << bad;
    EXPECT_NE(d.error().find("expected a duration such as"), std::string::npos) << d.error();
  }
  EXPECT_NE(ParseDuration("-5s").error().find("negative"), std::string::npos);
  EXPECT_NE(ParseDuration("5d").error().find("unknown unit"), std::string::npos);
  EXPECT_NE(ParseDuration("3000000h").error().find("at most a year"), std::string::npos);
  EXPECT_NE(ParseDuration("99999999999").error().find("at most a year"), std::string::npos);
  EXPECT_EQ(ParseDuration("8760h"), kMaxDuration);
}

}  // namespace
}  // namespace gearrun::jobs
