#include "sandbox/error.h"

#include <system_error>

namespace gearrun::sandbox {

std::string Error::ToString() const {
  if (code == 0) return message;
  // generic_category().message() is thread-safe, unlike strerror().
  return message + " (" + std::generic_category().message(code) + ")";
}

}  // namespace gearrun::sandbox
