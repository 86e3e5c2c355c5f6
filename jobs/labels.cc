#include "jobs/labels.h"

#include <algorithm>
#include <unordered_map>

namespace gearrun::jobs {

LabelSet MakeNodeLabels(std::string_view node_name, const std::vector<std::string>& labels) {
  LabelSet set(labels.begin(), labels.end());
  if (!node_name.empty()) set.emplace(node_name);
  return set;
}

std::vector<std::string> SplitLabelList(std::string_view text) {
  std::vector<std::string> out;
  std::string current;
  for (char c : text) {
    if (c == ',' || c == ' ' || c == '\t' || c == '\n') {
      if (!current.empty()) out.push_back(std::move(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool IsAtomChar(std::string_view text, size_t pos) {
  char c = text[pos];
  if (IsSpace(c)) return false;
  switch (c) {
    case '&':
    case '|':
    case '!':
    case '(':
    case ')':
    case '<':
    case '>':
    case '"':
      return false;
    case '-':
      return !(pos + 1 < text.size() && text[pos + 1] == '>');
    default:
      return true;
  }
}

}  // namespace

// Recursive descent over the text, one token of lookahead. Operators are emitted after their
// operands (postfix). The recursion is bounded: ParseBinary recurses a fixed number of levels
// per '(' or '!', and those are counted against kMaxLabelNesting.
class LabelExpr::Parser {
 public:
  Parser(std::string_view text, LabelExpr& out) : text_(text), out_(out) {}

  tl::expected<int, LabelExprError> Run() {
    SkipSpace();
    if (pos_ == text_.size()) return Fail("the expression is empty", 0);
    auto root = ParseBinary(0);
    if (!root) return root;
    SkipSpace();
    if (pos_ != text_.size()) {
      if (text_[pos_] == ')') return Fail("unbalanced ')'", pos_);
      if (text_[pos_] == '&' || text_[pos_] == '|') return SingleOperator(pos_);
      return Fail("expected an operator (&&, ||, ->, <->) before this", pos_);
    }
    return root;
  }

 private:
  // Binary operators by level, loosest first.
  static constexpr struct {
    std::string_view token;
    Op op;
  } kLevels[] = {{"<->", Op::kIff}, {"->", Op::kImplies}, {"||", Op::kOr}, {"&&", Op::kAnd}};
  static constexpr int kLevelCount = 4;

  tl::expected<int, LabelExprError> ParseBinary(int level) {
    if (level == kLevelCount) return ParseUnary();
    auto left = ParseBinary(level + 1);
    if (!left) return left;
    while (true) {
      SkipSpace();
      if (!text_.substr(pos_).starts_with(kLevels[level].token)) break;
      pos_ += kLevels[level].token.size();
      auto right = ParseBinary(level + 1);
      if (!right) return right;
      left = Add({.op = kLevels[level].op});
    }
    return left;
  }

  tl::expected<int, LabelExprError> ParseUnary() {
    SkipSpace();
    if (pos_ == text_.size()) return Fail("expected a label at the end", pos_);
    char c = text_[pos_];
    if (c == '!' || c == '(') {
      if (depth_ == kMaxLabelNesting) {
        return Fail(
            "nested more than " + std::to_string(kMaxLabelNesting) + " levels deep ('(' and '!')",
            pos_);
      }
      ++depth_;
      auto inner = c == '!' ? ParseNot() : ParseParenthesized();
      --depth_;
      return inner;
    }
    if (c == '"') return ParseQuoted();
    if (!IsAtomChar(text_, pos_)) {
      if ((c == '&' || c == '|') && !IsDoubled(pos_)) return SingleOperator(pos_);
      return Fail(std::string("expected a label, not '") + c + "'", pos_);
    }
    size_t start = pos_;
    while (pos_ < text_.size() && IsAtomChar(text_, pos_)) ++pos_;
    return AddAtom(std::string(text_.substr(start, pos_ - start)));
  }

  tl::expected<int, LabelExprError> ParseNot() {
    ++pos_;
    auto operand = ParseUnary();
    if (!operand) return operand;
    return Add({.op = Op::kNot});
  }

  tl::expected<int, LabelExprError> ParseParenthesized() {
    size_t open = pos_++;
    auto inner = ParseBinary(0);
    if (!inner) return inner;
    SkipSpace();
    if (pos_ == text_.size() || text_[pos_] != ')') return Fail("unbalanced '('", open);
    ++pos_;
    return inner;
  }

  tl::expected<int, LabelExprError> ParseQuoted() {
    size_t open = pos_++;
    std::string atom;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
      atom += text_[pos_++];
    }
    if (pos_ == text_.size()) return Fail("unterminated quoted label", open);
    ++pos_;
    if (atom.empty()) return Fail("empty quoted label", open);
    return AddAtom(std::move(atom));
  }

  int AddAtom(std::string atom) {
    auto [it, added] = atom_index_.emplace(atom, static_cast<int>(out_.atoms_.size()));
    if (added) out_.atoms_.push_back(std::move(atom));
    return Add({.op = Op::kAtom, .atom = it->second});
  }

  int Add(Node node) {
    out_.nodes_.push_back(node);
    return static_cast<int>(out_.nodes_.size()) - 1;
  }

  bool IsDoubled(size_t at) const { return at + 1 < text_.size() && text_[at + 1] == text_[at]; }
  tl::unexpected<LabelExprError> SingleOperator(size_t at) const {
    char c = text_[at];
    if (IsDoubled(at)) return Fail(std::string("expected a label before '") + c + c + "'", at);
    return Fail(std::string("a single '") + c + "' is not an operator; use '" + c + c + "'", at);
  }

  void SkipSpace() {
    while (pos_ < text_.size() && IsSpace(text_[pos_])) ++pos_;
  }

  static tl::unexpected<LabelExprError> Fail(std::string message, size_t offset) {
    return tl::unexpected(LabelExprError{std::move(message), static_cast<int>(offset)});
  }

  std::string_view text_;
  LabelExpr& out_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::unordered_map<std::string, int> atom_index_;  // atom -> its index in out_.atoms_
};

tl::expected<LabelExpr, LabelExprError> LabelExpr::Parse(std::string_view text) {
  LabelExpr expr;
  expr.text_ = std::string(text);
  Parser parser(expr.text_, expr);
  auto root = parser.Run();
  if (!root) return tl::unexpected(root.error());
  return expr;
}

bool LabelExpr::Matches(const LabelSet& labels) const {
  // Which atoms the node has, looked up once each rather than once per occurrence.
  std::vector<bool> has(atoms_.size());
  for (size_t i = 0; i < atoms_.size(); ++i) has[i] = labels.contains(atoms_[i]);
  std::vector<bool> stack;
  auto pop = [&stack] {
    bool top = stack.back();
    stack.pop_back();
    return top;
  };
  for (const Node& n : nodes_) {
    if (n.op == Op::kAtom) {
      stack.push_back(has[static_cast<size_t>(n.atom)]);
      continue;
    }
    if (n.op == Op::kNot) {
      stack.back() = !stack.back();
      continue;
    }
    bool right = pop();
    bool left = pop();
    switch (n.op) {
      case Op::kAnd:
        stack.push_back(left && right);
        break;
      case Op::kOr:
        stack.push_back(left || right);
        break;
      case Op::kImplies:
        stack.push_back(!left || right);
        break;
      case Op::kIff:
        stack.push_back(left == right);
        break;
      case Op::kAtom:
      case Op::kNot:
        break;
    }
  }
  return !stack.empty() && stack.back();
}

}  // namespace gearrun::jobs
