#include "runner/build_log.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
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

size_t SecretMasker::HoldFrom(size_t from) const {
  // The longest tail (from `from` on) that is the start of a secret, which the next bytes
  // may complete; nothing else is held back, so ordinary output is never delayed.
  size_t n = pending_.size();
  size_t max = std::min(longest_ - 1, n - from);
  for (size_t k = max; k > 0; --k) {
    std::string_view tail(pending_.data() + n - k, k);
    for (const auto& s : secrets_) {
      if (s.size() > k && std::string_view(s).starts_with(tail)) return n - k;
    }
  }
  return n;
}

std::string SecretMasker::Process(bool final) {
  std::string out;
  size_t i = 0;
  while (true) {
    size_t hold = final ? pending_.size() : HoldFrom(i);
    // The earliest match of any secret starting before `hold` (a match may run into the
    // held tail: then it is complete, and masked).
    size_t start = std::string::npos;
    for (const auto& s : secrets_) start = std::min(start, pending_.find(s, i));
    if (start == std::string::npos || start >= hold) {
      out.append(pending_, i, hold - i);
      i = hold;
      break;
    }
    // Mask the union of all matches that overlap this one: two secrets sharing bytes
    // ("ab" and "bcdef" in "abcdef") must not leave part of either readable.
    size_t end = start;
    for (bool grew = true; grew;) {
      grew = false;
      for (const auto& s : secrets_) {
        for (size_t at = pending_.find(s, start); at != std::string::npos && at <= end;
             at = pending_.find(s, at + 1)) {
          if (at + s.size() > end) {
            end = at + s.size();
            grew = true;
          }
        }
      }
    }
    out.append(pending_, i, start - i);
    out.append(kMask);
    i = end;
  }
  pending_.erase(0, i);
  return out;
}

std::string MaskSecrets(std::string_view text, const std::vector<std::string>& secrets) {
  SecretMasker masker(secrets);
  if (!masker.active()) return std::string(text);
  std::string out = masker.Feed(text);
  return out + masker.Flush();
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

void BuildLog::Flush() { EmitOutput(masker_.Flush()); }

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
  // The masker keeps only a tail that may begin a secret; it stays held across this line, so
  // a secret whose halves arrive on either side of it is still masked.
  std::string line;
  if (!at_line_start_) line += '\n';
  line += "[gearrun] ";
  line += MaskSecrets(text, options_.secrets);  // own lines may quote parameter values
  line += '\n';
  Emit(line);
}

void BuildLog::Emit(std::string_view bytes) {
  if (bytes.empty()) return;
  at_line_start_ = bytes.back() == '\n';
  // A full disk must not stop the build; what was lost is counted and reported with it.
  if (!sandbox::WriteAll(fd_.get(), bytes)) {
    if (write_error_.empty()) {
      write_error_ = "cannot write " + path_.string() + ": " + std::strerror(errno);
    }
    lost_bytes_ += bytes.size();
  }
  Tee(bytes);
}

void BuildLog::Tee(std::string_view bytes) {
  if (options_.tee_fd < 0) return;
  // Never block the build on the copy: a terminal that is not read (a pager, Ctrl-S, a
  // stalled pipe) would otherwise hold up timeouts and stops. Write only while the fd takes
  // data at once, at most PIPE_BUF at a time (a pipe takes that much without blocking when
  // poll says it is writable); drop the rest and say so when the copy can go on.
  auto writable = [&] {
    pollfd p{.fd = options_.tee_fd, .events = POLLOUT, .revents = 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) != 0;
  };
  auto write_some = [&](std::string_view& rest) {
    while (!rest.empty()) {
      if (!writable()) return false;
      ssize_t n = ::write(options_.tee_fd, rest.data(), std::min<size_t>(rest.size(), PIPE_BUF));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (errno != EAGAIN) options_.tee_fd = -1;  // gone (EPIPE): stop copying for good
        return false;
      }
      rest.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  };
  if (tee_dropped_ > 0) {
    std::string notice = "\n[gearrun] " + std::to_string(tee_dropped_) +
                         " bytes not shown here: this output did not keep up (the build log "
                         "has everything: " +
                         path_.string() + ")\n";
    std::string_view rest = notice;
    if (!write_some(rest)) return void(tee_dropped_ += bytes.size());
    tee_dropped_ = 0;
  }
  std::string_view rest = bytes;
  if (!write_some(rest)) tee_dropped_ += rest.size();
}

}  // namespace gearrun::runner
