#include "jobs/labels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gearrun::jobs {
namespace {

using ::testing::ElementsAre;

bool Eval(std::string_view expr, const std::vector<std::string>& labels) {
  auto parsed = LabelExpr::Parse(expr);
  EXPECT_TRUE(parsed.has_value()) << expr << ": " << parsed.error().message;
  return parsed && parsed->Matches(LabelSet(labels.begin(), labels.end()));
}

TEST(LabelExprTest, SingleAtom) {
  EXPECT_TRUE(Eval("ubuntu", {"ubuntu", "gcc"}));
  EXPECT_FALSE(Eval("arm", {"ubuntu", "gcc"}));
}

TEST(LabelExprTest, AndOrNot) {
  EXPECT_TRUE(Eval("ubuntu && gcc", {"ubuntu", "gcc"}));
  EXPECT_FALSE(Eval("ubuntu && arm", {"ubuntu", "gcc"}));
  EXPECT_TRUE(Eval("ubuntu || arm", {"ubuntu"}));
  EXPECT_TRUE(Eval("ubuntu && !arm", {"ubuntu"}));
  EXPECT_FALSE(Eval("ubuntu && !arm", {"ubuntu", "arm"}));
  EXPECT_TRUE(Eval("!!ubuntu", {"ubuntu"}));
}

TEST(LabelExprTest, AndBindsTighterThanOr) {
  // a || (b && c), not (a || b) && c
  EXPECT_TRUE(Eval("a || b && c", {"a"}));
  EXPECT_FALSE(Eval("(a || b) && c", {"a"}));
  // (a && b) || c
  EXPECT_TRUE(Eval("a && b || c", {"c"}));
}

TEST(LabelExprTest, NotBindsTighterThanAnd) {
  // (!a) && b
  EXPECT_TRUE(Eval("!a && b", {"b"}));
  EXPECT_FALSE(Eval("!a && b", {"a", "b"}));
  // !(a && b)
  EXPECT_TRUE(Eval("!(a && b)", {"a"}));
}

TEST(LabelExprTest, ImpliesAndIff) {
  EXPECT_TRUE(Eval("arm -> cross", {"x86"}));
  EXPECT_FALSE(Eval("arm -> cross", {"arm"}));
  EXPECT_TRUE(Eval("arm -> cross", {"arm", "cross"}));
  EXPECT_TRUE(Eval("a <-> b", {}));
  EXPECT_FALSE(Eval("a <-> b", {"a"}));
  // || binds tighter than ->: (a || b) -> c
  EXPECT_FALSE(Eval("a || b -> c", {"b"}));
}

TEST(LabelExprTest, AtomsMayContainDashesDotsAndQuotes) {
  EXPECT_TRUE(Eval("ubuntu-22.04", {"ubuntu-22.04"}));
  EXPECT_TRUE(Eval("\"has space\" && x", {"has space", "x"}));
  EXPECT_TRUE(Eval("\"quote\\\"inside\"", {"quote\"inside"}));
  EXPECT_TRUE(Eval("a->b", {"b"}));  // "->" is an operator even without spaces
}

TEST(LabelExprTest, ListsAtomsInOrderOnce) {
  auto expr = LabelExpr::Parse("ubuntu && (gcc || !arm) && ubuntu");
  ASSERT_TRUE(expr);
  EXPECT_THAT(expr->atoms(), ElementsAre("ubuntu", "gcc", "arm"));
}

TEST(LabelExprTest, MalformedExpressionsSayWhereAndWhy) {
  struct Case {
    const char* text;
    const char* message;
    int offset;
  };
  for (const Case& c :
       {Case{"", "empty", 0}, Case{"   ", "empty", 0},
        Case{"a &&", "expected a label at the end", 4}, Case{"a & b", "single '&'", 2},
        Case{"a | b", "single '|'", 2}, Case{"(a || b", "unbalanced '('", 0},
        Case{"a || b)", "unbalanced ')'", 6}, Case{"a b", "expected an operator", 2},
        Case{"&& a", "expected a label", 0}, Case{"\"open", "unterminated", 0},
        Case{"\"\"", "empty quoted", 0}, Case{"a && ()", "expected a label, not ')'", 6},
        Case{"a > b", "expected an operator", 2}}) {
    auto expr = LabelExpr::Parse(c.text);
    ASSERT_FALSE(expr.has_value()) << c.text;
    EXPECT_THAT(expr.error().message, ::testing::HasSubstr(c.message)) << c.text;
    EXPECT_EQ(expr.error().offset, c.offset) << c.text;
  }
}

// Inputs that once overflowed the stack (deep nesting, long operator chains): each is an
// error or an answer, in time linear in its length.
TEST(LabelExprTest, DeepNestingIsAnErrorNotAStackOverflow) {
  for (const std::string& text : {std::string(5000, '(') + "a" + std::string(5000, ')'),
                                  std::string(50000, '!') + "a", std::string(200000, '(')}) {
    auto expr = LabelExpr::Parse(text);
    ASSERT_FALSE(expr.has_value());
    EXPECT_THAT(expr.error().message, ::testing::HasSubstr("nested more than 100 levels"));
    EXPECT_EQ(expr.error().offset, kMaxLabelNesting);
  }
  // The limit itself is allowed.
  std::string deepest =
      std::string(kMaxLabelNesting, '(') + "a" + std::string(kMaxLabelNesting, ')');
  EXPECT_TRUE(Eval(deepest, {"a"}));
  EXPECT_FALSE(Eval(std::string(kMaxLabelNesting - 1, '!') + "a", {"a"}));
  EXPECT_TRUE(Eval(std::string(kMaxLabelNesting, '!') + "a", {"a"}));
}

TEST(LabelExprTest, LongChainsOfOperatorsEvaluateWithoutRecursion) {
  std::string ands = "a";
  std::string ors = "x0";
  for (int i = 1; i < 200000; ++i) {
    ands += " && a";
    ors += " || x" + std::to_string(i);
  }
  EXPECT_TRUE(Eval(ands, {"a"}));
  EXPECT_FALSE(Eval(ands, {"b"}));
  // 200,000 distinct atoms: each is looked up once, not compared with every other.
  auto expr = LabelExpr::Parse(ors);
  ASSERT_TRUE(expr.has_value());
  EXPECT_EQ(expr->atoms().size(), 200000u);
  EXPECT_TRUE(expr->Matches({"x199999"}));
  EXPECT_FALSE(expr->Matches({"y"}));
  std::string implications = "a";
  for (int i = 0; i < 100000; ++i) implications += " -> a <-> a";
  EXPECT_TRUE(Eval(implications, {"a"}));
}

TEST(NodeLabelsTest, IncludeTheNodeName) {
  EXPECT_EQ(MakeNodeLabels("build-01", {"ubuntu", "gcc"}), (LabelSet{"build-01", "gcc", "ubuntu"}));
  EXPECT_THAT(SplitLabelList("a,b  c,,d"), ElementsAre("a", "b", "c", "d"));
}

}  // namespace
}  // namespace gearrun::jobs
