#include "jobs/duration.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace gearrun::jobs {
namespace {

constexpr std::string_view kExpected =
    "expected a duration such as 250ms, 10s, 5m, 2h, 1h30m or a number of seconds";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads digits with an optional fraction starting at `pos`; advances `pos`.
bool ReadNumber(std::string_view text, size_t& pos, double& value) {
  size_t start = pos;
  bool seen_digit = false;
  bool seen_dot = false;
  while (pos < text.size() && (IsDigit(text[pos]) || (text[pos] == '.' && !seen_dot))) {
    if (text[pos] == '.') {
      seen_dot = true;
    } else {
      seen_digit = true;
    }
    ++pos;
  }
  if (!seen_digit) return false;
  value = 0;
  double scale = 1;
  bool fraction = false;
  for (size_t i = start; i < pos; ++i) {
    if (text[i] == '.') {
      fraction = true;
      continue;
    }
    double digit = text[i] - '0';
    if (fraction) {
      scale /= 10;
      value += digit * scale;
    } else {
      value = value * 10 + digit;
    }
  }
  return true;
}

}  // namespace

tl::expected<Duration, std::string> ParseDuration(std::string_view text) {
  auto fail = [&](std::string_view why) {
    std::string msg(kExpected);
    msg += ", not '";
    msg += text;
    msg += "'";
    if (!why.empty()) {
      msg += " (";
      msg += why;
      msg += ")";
    }
    return tl::unexpected(msg);
  };
  if (text.empty()) return fail("empty");
  if (text.front() == '-') return fail("durations cannot be negative");

  size_t pos = 0;
  double first = 0;
  if (!ReadNumber(text, pos, first)) return fail("");
  if (pos == text.size()) {
    // A bare number is seconds.
    double ms = first * 1000;
    if (ms > static_cast<double>(kMaxDuration.count())) return fail("at most a year");
    return Duration(static_cast<int64_t>(std::llround(ms)));
  }

  struct Unit {
    std::string_view suffix;
    double ms;
  };
  // Longer suffixes first so that "ms" is not read as "m".
  static constexpr Unit kUnits[] = {{"ms", 1}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}};

  double total_ms = 0;
  double value = first;
  int last_rank = -1;  // units must go from larger to smaller: 1h30m, not 30m1h
  while (true) {
    const Unit* unit = nullptr;
    int rank = 0;
    static constexpr int kRank[] = {3, 0, 1, 2};  // ms, h, m, s -> order h < m < s < ms
    for (int i = 0; i < 4; ++i) {
      if (text.substr(pos).starts_with(kUnits[i].suffix)) {
        unit = &kUnits[i];
        rank = kRank[i];
        break;
      }
    }
    if (unit == nullptr) return fail("unknown unit; use ms, s, m or h");
    if (rank <= last_rank) return fail("units must go from larger to smaller, each once");
    last_rank = rank;
    pos += unit->suffix.size();
    total_ms += value * unit->ms;
    if (total_ms > static_cast<double>(kMaxDuration.count())) return fail("at most a year");
    if (pos == text.size()) break;
    if (!ReadNumber(text, pos, value)) return fail("");
    if (pos == text.size()) return fail("a unit is missing after the last number");
  }
  return Duration(static_cast<int64_t>(std::llround(total_ms)));
}

}  // namespace gearrun::jobs
