// Durations as job files write them: "250ms", "10s", "5m", "2h", "1h30m", or a bare number
// of seconds ("90", "1.5").
//
// Pure functions; thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace gearrun::jobs {

using Duration = std::chrono::milliseconds;

// Longer than any build should wait, short enough that deadlines never overflow.
inline constexpr Duration kMaxDuration = std::chrono::hours(24 * 365);

// Parses a duration. On failure returns a message that says what was expected.
// Negative durations and durations over a year (kMaxDuration) are errors; zero is accepted
// (callers that need a positive value check that themselves).
[[nodiscard]] tl::expected<Duration, std::string> ParseDuration(std::string_view text);

}  // namespace gearrun::jobs
