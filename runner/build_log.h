// BuildLog: the one log file of a build (and, for `gearrun run`, a live copy on the
// terminal). Step output arrives through the sandbox's OutputSink interface; the build's
// own lines ("[gearrun] step 'compile' attempt 1 of 3 ...") through Line().
//
// - Secret values are replaced by "****" everywhere, also when a secret arrives split
//   across two reads (SecretMasker holds back the bytes that could start one).
// - Step output is capped: past `cap_bytes` it is dropped and one marker line says so; the
//   steps keep running and the build's own lines are still written.
//
//   auto log = BuildLog::Open(dir / "log", {.cap_bytes = 100 << 20, .secrets = {"s3cret"},
//                                          .tee_fd = STDOUT_FILENO});
//   log->Line("step 'compile' started");
//   container.Run(command, *log, token);  // output goes through Write()
//
// Not thread-safe: one build thread writes to its log.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "sandbox/process.h"
#include "sandbox/unique_fd.h"

namespace gearrun::runner {

inline constexpr std::string_view kMask = "****";

// Replaces secrets in a stream that arrives in pieces.
class SecretMasker {
 public:
  explicit SecretMasker(std::vector<std::string> secrets);

  // Returns what can be passed on now; keeps back only a tail that may be the start of a
  // secret. Overlapping matches of several secrets are masked as one.
  [[nodiscard]] std::string Feed(std::string_view bytes);
  // Returns everything still held back (masked), e.g. at the end of a step.
  [[nodiscard]] std::string Flush();
  [[nodiscard]] bool active() const { return !secrets_.empty(); }

 private:
  std::string Process(bool final);
  [[nodiscard]] size_t HoldFrom(size_t from) const;

  std::vector<std::string> secrets_;  // non-empty, longest first
  size_t longest_ = 0;
  std::string pending_;
};

// `text` with every secret replaced by kMask (for records, reasons and payload fields).
[[nodiscard]] std::string MaskSecrets(std::string_view text,
                                      const std::vector<std::string>& secrets);

struct BuildLogOptions {
  std::uint64_t cap_bytes = 0;       // step output kept at most; 0: no cap
  std::vector<std::string> secrets;  // values to mask (empty ones are ignored)
  // Also copy everything here (not owned), as far as the fd takes it without blocking;
  // -1: no copy.
  int tee_fd = -1;
};

class BuildLog final : public sandbox::OutputSink {
 public:
  // Creates (or truncates) the log file.
  [[nodiscard]] static tl::expected<BuildLog, std::string> Open(const std::filesystem::path& path,
                                                                BuildLogOptions options);

  BuildLog(BuildLog&&) = default;
  BuildLog& operator=(BuildLog&&) = default;
  ~BuildLog() override = default;

  // Step output: masked, capped.
  void Write(std::string_view bytes) override;
  // Writes out what the masker still holds (at the end of the build).
  void Flush();
  // One line of the build's own, prefixed "[gearrun] ", on a line of its own (a newline is
  // added first when step output did not end with one). Masked, never capped.
  void Line(std::string_view text);

  [[nodiscard]] bool capped() const { return capped_; }
  // Why bytes meant for the file were lost (a full or read-only file system), and how many;
  // empty while every write succeeded. The build goes on (its outcome says what happened);
  // whoever reports the build must say that its log is incomplete.
  [[nodiscard]] const std::string& write_error() const { return write_error_; }
  [[nodiscard]] std::uint64_t lost_bytes() const { return lost_bytes_; }
  [[nodiscard]] std::uint64_t output_bytes() const { return output_bytes_; }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  BuildLog(std::filesystem::path path, sandbox::UniqueFd fd, BuildLogOptions options);
  void Emit(std::string_view bytes);
  void Tee(std::string_view bytes);
  void EmitOutput(std::string_view bytes);

  std::filesystem::path path_;
  sandbox::UniqueFd fd_;
  BuildLogOptions options_;
  SecretMasker masker_;
  std::uint64_t output_bytes_ = 0;
  bool capped_ = false;
  bool at_line_start_ = true;
  std::uint64_t tee_dropped_ = 0;  // bytes the copy could not take since it last could
  std::string write_error_;        // the first failed write's reason
  std::uint64_t lost_bytes_ = 0;
};

}  // namespace gearrun::runner
