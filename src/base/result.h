// Errors as values.  A Result<T> holds either a T or an Error that carries
// a message with its context, the errno that caused it (0 if none), and an
// optional hint telling the user how to fix it.  Library code returns these;
// only the CLI prints them.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace cryo {

// What went wrong, for callers that act on it and for scripts (the "kind"
// of 'cryo ... --json' errors).  Set where the error is made; unset, it is
// derived from the errno (kind_of).
enum class ErrorKind {
  unknown,
  usage,        // wrong arguments
  config,       // the settings: cryo.conf, the environment
  not_found,    // no such job, checkpoint or file
  denied,       // not the caller's to use, or needs privilege
  busy,         // another process holds it (a running job, a checkpoint in progress)
  corrupt,      // a checkpoint damaged, forged or incomplete
  no_space,     // a disk or quota full
  criu,         // CRIU failed, or is missing or too old
  exec,         // the job's command cannot be executed
  unfit,        // this node cannot run the checkpoint (CPU, files, mounts, memory)
};

struct Error {
  std::string message;
  int code = 0;  // errno, or 0
  std::string hint;
  ErrorKind kind = ErrorKind::unknown;

  Error with_hint(std::string h) const& {
    Error e = *this;
    e.hint = std::move(h);
    return e;
  }
  Error of_kind(ErrorKind k) const& {
    Error e = *this;
    e.kind = k;
    return e;
  }
  // Adds what follows to the message: "message; after".
  Error context_after(const std::string& after) const& {
    Error e = *this;
    e.message += "; " + after;
    return e;
  }
  // Prefixes the message with more context: "ctx: message".
  Error context(const std::string& ctx) const& {
    Error e = *this;
    e.message = ctx + ": " + message;
    return e;
  }
};

// "what: strerror(err)", keeping err.
Error sys_error(const std::string& what, int err = errno);
inline Error make_error(std::string msg) { return Error{std::move(msg), 0, {}}; }
inline Error make_error(ErrorKind kind, std::string msg) { return Error{std::move(msg), 0, {}, kind}; }
// e's kind, or the one its errno implies.
ErrorKind kind_of(const Error& e);
// "not_found", "no_space", ...; "error" for unknown.
const char* kind_name(ErrorKind k);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace cryo

// Returns the error of a failed Result from the enclosing function.
#define CRYO_TRY(expr)                                  \
  do {                                                  \
    auto&& cryo_try_r_ = (expr);                        \
    if (!cryo_try_r_.ok()) return cryo_try_r_.error();  \
  } while (0)

// Invariant checks stay on in release builds (rr).
#define CRYO_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) ::cryo::check_failed(#cond, __FILE__, __LINE__);         \
  } while (0)

namespace cryo {
[[noreturn]] void check_failed(const char* cond, const char* file, int line);
}
