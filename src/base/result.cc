#include "base/result.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cryo {

Error sys_error(const std::string& what, int err) {
  return Error{what + ": " + std::strerror(err), err, {}};
}

ErrorKind kind_of(const Error& e) {
  if (e.kind != ErrorKind::unknown) return e.kind;
  switch (e.code) {
    case ENOENT: return ErrorKind::not_found;
    case EACCES:
    case EPERM:
    case EROFS: return ErrorKind::denied;
    case ENOSPC:
    case EDQUOT: return ErrorKind::no_space;
    case EBUSY:
    case EWOULDBLOCK: return ErrorKind::busy;
    default: return ErrorKind::unknown;
  }
}

const char* kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::unknown: break;
    case ErrorKind::usage: return "usage";
    case ErrorKind::config: return "config";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::denied: return "denied";
    case ErrorKind::busy: return "busy";
    case ErrorKind::corrupt: return "corrupt";
    case ErrorKind::no_space: return "no_space";
    case ErrorKind::criu: return "criu";
    case ErrorKind::exec: return "exec";
    case ErrorKind::unfit: return "unfit";
  }
  return "error";
}

void check_failed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "cryo: internal error: check '%s' failed at %s:%d\n", cond, file, line);
  std::abort();
}

}  // namespace cryo
