#include "jobs/labels.h"

#include <algorithm>

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

// Recursive descent over the text, one token of lookahead.
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
      left = Add({.op = kLevels[level].op, .left = *left, .right = *right});
    }
    return left;
  }

  tl::expected<int, LabelExprError> ParseUnary() {
    SkipSpace();
    if (pos_ == text_.size()) return Fail("expected a label at the end", pos_);
    char c = text_[pos_];
    if (c == '!') {
      ++pos_;
      auto operand = ParseUnary();
      if (!operand) return operand;
      return Add({.op = Op::kNot, .left = *operand});
    }
    if (c == '(') {
      size_t open = pos_++;
      auto inner = ParseBinary(0);
      if (!inner) return inner;
      SkipSpace();
      if (pos_ == text_.size() || text_[pos_] != ')') return Fail("unbalanced '('", open);
      ++pos_;
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
    auto it = std::find(out_.atoms_.begin(), out_.atoms_.end(), atom);
    int index = static_cast<int>(it - out_.atoms_.begin());
    if (it == out_.atoms_.end()) out_.atoms_.push_back(std::move(atom));
    return Add({.op = Op::kAtom, .atom = index});
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
};

tl::expected<LabelExpr, LabelExprError> LabelExpr::Parse(std::string_view text) {
  LabelExpr expr;
  expr.text_ = std::string(text);
  Parser parser(expr.text_, expr);
  auto root = parser.Run();
  if (!root) return tl::unexpected(root.error());
  expr.root_ = *root;
  return expr;
}

bool LabelExpr::Matches(const LabelSet& labels) const { return Eval(root_, labels); }

bool LabelExpr::Eval(int index, const LabelSet& labels) const {
  const Node& n = nodes_[static_cast<size_t>(index)];
  switch (n.op) {
    case Op::kAtom:
      return labels.contains(atoms_[static_cast<size_t>(n.atom)]);
    case Op::kNot:
      return !Eval(n.left, labels);
    case Op::kAnd:
      return Eval(n.left, labels) && Eval(n.right, labels);
    case Op::kOr:
      return Eval(n.left, labels) || Eval(n.right, labels);
    case Op::kImplies:
      return !Eval(n.left, labels) || Eval(n.right, labels);
    case Op::kIff:
      return Eval(n.left, labels) == Eval(n.right, labels);
  }
  return false;
}

}  // namespace gearrun::jobs
