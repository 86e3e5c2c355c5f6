#include "runner/logging.h"

#include <gtest/gtest.h>

namespace gearrun::runner {
namespace {

// Text that came from outside (a unique id, a URL, a reason quoting a parameter) must not
// split a daemon log line or drive the terminal that shows it.
TEST(LoggingTest, EscapeForLogKeepsEveryMessageOnOnePrintableLine) {
  EXPECT_EQ(EscapeForLog("build started [job: guava]"), "build started [job: guava]");
  EXPECT_EQ(EscapeForLog("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(EscapeForLog("\x1b[31mred\x7f"), "\\x1b[31mred\\x7f");
  EXPECT_EQ(EscapeForLog(std::string("nul\0here", 8)), "nul\\x00here");
  EXPECT_EQ(EscapeForLog("back\\slash"), "back\\\\slash");
  // UTF-8 is kept; C1 controls and bytes that are not UTF-8 are escaped.
  EXPECT_EQ(EscapeForLog("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(EscapeForLog("\xc2\x9b"
                         "31m"),
            "\\xc2\\x9b31m");
  EXPECT_EQ(EscapeForLog("\xff\xfe\xc3"), "\\xff\\xfe\\xc3");
  EXPECT_EQ(EscapeForLog("\xe0\x80\x80"), "\\xe0\\x80\\x80");  // overlong
  EXPECT_EQ(EscapeForLog("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
}

}  // namespace
}  // namespace gearrun::runner
