// Jenkins label expressions ("ubuntu && !arm", "(gcc || clang) && \"x86 64\"") and node
// label sets.
//
// Grammar, loosest binding first: `a <-> b`, `a -> b`, `a || b`, `a && b`, `!a`, `(a)`.
// An atom is a run of characters other than white space and & | ! ( ) < > " (a '-' is
// part of an atom unless it starts "->"), or a double-quoted string with \" and \\ escapes.
//
//   auto expr = LabelExpr::Parse("ubuntu && !arm");
//   if (!expr) return expr.error().message;
//   bool runs_here = expr->Matches(MakeNodeLabels("build-01", {"ubuntu", "gcc"}));
//
// Bounded work for any text: parsing is linear in the text's length, nesting ('(' and '!')
// deeper than kMaxLabelNesting is an error rather than a deep recursion, and Matches()
// evaluates without recursion however long a chain of operators is.
//
// A parsed LabelExpr is immutable and safe to share between threads.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

namespace gearrun::jobs {

using LabelSet = std::set<std::string, std::less<>>;

// A node's labels always include its own name, as in Jenkins.
[[nodiscard]] LabelSet MakeNodeLabels(std::string_view node_name,
                                      const std::vector<std::string>& labels);

// Splits "a,b c" on commas and white space, dropping empty pieces.
[[nodiscard]] std::vector<std::string> SplitLabelList(std::string_view text);

// How deeply '(' and '!' may nest: far beyond any real expression, and small enough that the
// parser's recursion stays a few kilobytes of stack.
inline constexpr int kMaxLabelNesting = 100;

struct LabelExprError {
  std::string message;
  int offset = 0;  // 0-based position in the expression text
};

class LabelExpr {
 public:
  [[nodiscard]] static tl::expected<LabelExpr, LabelExprError> Parse(std::string_view text);

  // Whether a node with these labels satisfies the expression.
  [[nodiscard]] bool Matches(const LabelSet& labels) const;

  // The distinct atoms of the expression in order of first appearance, negated ones included
  // (as Jenkins' Label.listAtoms()).
  [[nodiscard]] const std::vector<std::string>& atoms() const { return atoms_; }
  [[nodiscard]] const std::string& text() const { return text_; }

 private:
  enum class Op { kAtom, kNot, kAnd, kOr, kImplies, kIff };
  // The expression in postfix order (operands before their operator, the root last), so
  // that it is evaluated with a stack in one pass.
  struct Node {
    Op op;
    int atom = -1;  // index into atoms_ for kAtom
  };
  class Parser;

  std::string text_;
  std::vector<Node> nodes_;
  std::vector<std::string> atoms_;
};

}  // namespace gearrun::jobs
