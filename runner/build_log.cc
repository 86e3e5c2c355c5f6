#include "runner/build_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace gearrun::runner {

SecretMasker::SecretMasker(std::vector<std::string> secrets) {
  for (auto& s : secrets) {
    if (!s.empty()) secrets_.push_back(std::move(s));
  }
  // Longest first, so that of two secrets starting at the same byte the longer one wins.
  std::sort(secrets_.begin(), secrets_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  secrets_.erase(std::unique(secrets_.begin(), secrets_.end()), secrets_.end());
  longest_ = secrets_.empty() ? 0 : secrets_.front().size();
}

std::string SecretMasker::Feed(std::string_view bytes) {
  if (secrets_.empty()) return std::string(bytes);
  pending_.append(bytes);
  return Process(false);
}

std::string SecretMasker::Flush() { return Process(true); }

std::string SecretMasker::Process(bool final) {
  // A secret that starts before `safe` ends within pending_, so it can be decided now; bytes
  // from `safe` on might begin a secret whose rest has not arrived yet.
  size_t safe = final ? pending_.size()
                      : (pending_.size() >= longest_ ? pending_.size() - (longest_ - 1) : 0);
  std::string out;
  size_t i = 0;
  while (i < safe) {
    size_t best = std::string::npos;
    size_t best_len = 0;
    for (const auto& s : secrets_) {
      size_t at = pending_.find(s, i);
      if (at < best) {  // strictly earlier; ties keep the longer (earlier in the list)
        best = at;
        best_len = s.size();
      }
    }
    if (best == std::string::npos || best >= safe) {
      out.append(pending_, i, safe - i);
      i = safe;
      break;
    }
    out.append(pending_, i, best - i);
    out.append(kMask);
    i = best + best_len;
  }
  pending_.erase(0, i);  // i >= safe: a mask may end past it, never past the end
  return out;
}

tl::expected<BuildLog, std::string> BuildLog::Open(const std::filesystem::path& path,
                                                   BuildLogOptions options) {
  sandbox::UniqueFd fd(
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  if (!fd) {
    return tl::unexpected("cannot create build log " + path.string() + ": " + std::strerror(errno));
  }
  return BuildLog(path, std::move(fd), std::move(options));
}

BuildLog::BuildLog(std::filesystem::path path, sandbox::UniqueFd fd, BuildLogOptions options)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      options_(std::move(options)),
      masker_(options_.secrets) {}

void BuildLog::Write(std::string_view bytes) { EmitOutput(masker_.Feed(bytes)); }

void BuildLog::EmitOutput(std::string_view bytes) {
  if (bytes.empty() || capped_) return;
  std::uint64_t cap = options_.cap_bytes;
  if (cap > 0 && output_bytes_ + bytes.size() > cap) {
    Emit(bytes.substr(0, static_cast<size_t>(cap - output_bytes_)));
    output_bytes_ = cap;
    capped_ = true;
    Line("log cap of " + std::to_string(cap) +
         " bytes reached: further output of this build is dropped (the steps keep running)");
    return;
  }
  output_bytes_ += bytes.size();
  Emit(bytes);
}

void BuildLog::Line(std::string_view text) {
  EmitOutput(masker_.Flush());
  std::string line;
  if (!at_line_start_) line += '\n';
  line += "[gearrun] ";
  // The build's own lines may quote parameter values: mask them too.
  SecretMasker masker(options_.secrets);
  line += masker.Feed(text);
  line += masker.Flush();
  line += '\n';
  Emit(line);
}

namespace {

// Writes everything or gives up on that fd (returns false).
bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

void BuildLog::Emit(std::string_view bytes) {
  if (bytes.empty()) return;
  at_line_start_ = bytes.back() == '\n';
  // A full disk must not stop the build; the record still tells how it ended.
  (void)WriteAll(fd_.get(), bytes);
  if (options_.tee_fd >= 0 && !WriteAll(options_.tee_fd, bytes)) {
    options_.tee_fd = -1;  // the terminal went away (e.g. `gearrun run | head`): stop copying
  }
}

}  // namespace gearrun::runner
