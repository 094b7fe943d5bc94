#include "base/result.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cryo {

Error sys_error(const std::string& what, int err) {
  return Error{what + ": " + std::strerror(err), err, {}};
}

void check_failed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "cryo: internal error: check '%s' failed at %s:%d\n", cond, file, line);
  std::abort();
}

}  // namespace cryo
