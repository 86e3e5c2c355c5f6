#include "sandbox/unique_fd.h"

#include <unistd.h>

namespace gearrun::sandbox {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace gearrun::sandbox
