// Test support: deterministic fuzzing inside the test suite. A seeded mutator turns valid
// inputs (job files, workloads, label expressions) into hostile ones; the same seed gives
// the same inputs, so a failure is reproduced by its seed.
//
// The budget comes from the environment, so that CI runs a fixed, quick amount (under the
// ASan/UBSan build) and a developer can run far more:
//   GEARRUN_FUZZ_ITERATIONS=200000 GEARRUN_FUZZ_SEED=7 build/tests/jobs/jobs_test
//   --gtest_filter='*Fuzz*'
//
//   testing::Mutator m(testing::FuzzSeed() + 1);
//   for (int i = 0; i < testing::FuzzIterations(2000); ++i) {
//     std::string input = m.Mutate(corpus[m.Below(corpus.size())], kDictionary);
//     ... the code under test must return (an error is fine), never crash or hang ...
//   }
//
// Header-only; a Mutator is used by one thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace gearrun::testing {

// GEARRUN_FUZZ_ITERATIONS, else `default_count`.
inline int FuzzIterations(int default_count) {
  const char* text = std::getenv("GEARRUN_FUZZ_ITERATIONS");
  if (text == nullptr || *text == '\0') return default_count;
  return std::max(1, std::atoi(text));
}

// How long one fuzz test may run before it stops early: GEARRUN_FUZZ_SECONDS, else 20 s (so
// that a slow machine still gets through CI, well inside the tests' timeouts).
inline std::chrono::seconds FuzzTimeBudget() {
  const char* text = std::getenv("GEARRUN_FUZZ_SECONDS");
  if (text == nullptr || *text == '\0') return std::chrono::seconds(20);
  return std::chrono::seconds(std::max(1, std::atoi(text)));
}

// GEARRUN_FUZZ_SEED, else a fixed seed.
inline std::uint64_t FuzzSeed() {
  const char* text = std::getenv("GEARRUN_FUZZ_SEED");
  if (text == nullptr || *text == '\0') return 20261203;
  return std::strtoull(text, nullptr, 10);
}

// The example job files (examples/jobs), the usual seed corpus for job-file fuzzing.
inline std::vector<std::string> ExampleJobFiles() {
  std::vector<std::string> corpus;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(GEARRUN_SOURCE_DIR) / "examples/jobs")) {
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    corpus.push_back(text.str());
  }
  return corpus;
}

class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}

  // A number in [0, n); 0 when n is 0.
  std::size_t Below(std::size_t n) {
    if (n == 0) return 0;
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  bool OneIn(std::size_t n) { return Below(n) == 0; }

  // `input` changed in 1 to 8 ways: bytes flipped, inserted, deleted or repeated, a range
  // copied elsewhere, words of `dictionary` inserted or repeated many times, the text cut.
  std::string Mutate(std::string_view input, const std::vector<std::string>& dictionary) {
    std::string s(input);
    std::size_t rounds = 1 + Below(8);
    for (std::size_t r = 0; r < rounds; ++r) {
      std::size_t at = Below(s.size() + 1);
      switch (Below(8)) {
        case 0:  // flip a byte
          if (!s.empty()) s[Below(s.size())] = static_cast<char>(Below(256));
          break;
        case 1:  // insert a byte
          s.insert(at, 1, static_cast<char>(Below(256)));
          break;
        case 2:  // delete a range
          if (!s.empty()) s.erase(Below(s.size()), 1 + Below(16));
          break;
        case 3: {  // copy a range elsewhere
          if (s.empty()) break;
          std::size_t from = Below(s.size());
          std::string piece = s.substr(from, 1 + Below(64));
          s.insert(Below(s.size() + 1), piece);
          break;
        }
        case 4:  // a word of the dictionary
          if (!dictionary.empty()) s.insert(at, dictionary[Below(dictionary.size())]);
          break;
        case 5: {  // a word repeated many times (deep nesting, long chains)
          if (dictionary.empty()) break;
          const std::string& word = dictionary[Below(dictionary.size())];
          std::size_t times = 1 + Below(OneIn(8) ? 20000 : 200);
          std::string run;
          for (std::size_t i = 0; i < times && run.size() < (1u << 20); ++i) run += word;
          s.insert(at, run);
          break;
        }
        case 6:  // cut
          s.resize(Below(s.size() + 1));
          break;
        default:  // swap two bytes
          if (s.size() >= 2) std::swap(s[Below(s.size())], s[Below(s.size())]);
          break;
      }
    }
    return s;
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace gearrun::testing
