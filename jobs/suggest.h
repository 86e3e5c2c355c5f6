// "Did you mean": the known word closest to a misspelt one, for error messages about job
// files and node configuration alike.
//
// Pure function; thread-safe.
#pragma once

#include <string_view>
#include <vector>

namespace gearrun::jobs {

// The entry of `known` closest to `word` (same letters in another case, or at most two
// edits, a swap of neighbours counting as one); empty when none is that close.
[[nodiscard]] std::string_view ClosestWord(std::string_view word,
                                           const std::vector<std::string_view>& known);

}  // namespace gearrun::jobs
