#include "runner/workspace.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <cstring>

namespace gearrun::runner {

namespace fs = std::filesystem;

tl::expected<Workspace, std::string> Workspace::Acquire(const fs::path& root,
                                                        const std::string& job,
                                                        WorkspaceClean clean) {
  constexpr int kMaxConcurrent = 1000;
  for (int i = 1; i <= kMaxConcurrent; ++i) {
    fs::path path = root / (i == 1 ? job : job + "@" + std::to_string(i));
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) return tl::unexpected("cannot create workspace " + path.string() + ": " + ec.message());
    sandbox::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
      return tl::unexpected("cannot open workspace " + path.string() + ": " + std::strerror(errno));
    }
    int rc;
    do {
      rc = ::flock(fd.get(), LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      if (errno == EWOULDBLOCK) continue;  // another build has it
      return tl::unexpected("cannot lock workspace " + path.string() + ": " + std::strerror(errno));
    }
    if (clean == WorkspaceClean::kEmpty) {
      for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
        fs::remove_all(it->path(), ec);
        if (ec) {
          return tl::unexpected("cannot empty workspace " + path.string() + ": " +
                                it->path().string() + ": " + ec.message());
        }
      }
      if (ec)
        return tl::unexpected("cannot empty workspace " + path.string() + ": " + ec.message());
    }
    return Workspace(path, std::move(fd));
  }
  return tl::unexpected("more than " + std::to_string(kMaxConcurrent) + " builds of " + job +
                        " at once");
}

}  // namespace gearrun::runner
