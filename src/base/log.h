// Debug logging by module: CRYO_LOG=criu:debug,store:info, given to configure() (or "debug" for
// all modules).  Errors are not logged here; they travel as Result values
// to the CLI, which prints them once.
#pragma once

#include <sstream>
#include <string_view>

namespace cryo::log {

enum class Level { error = 0, warn = 1, info = 2, debug = 3 };

// Sets the levels from a spec such as "criu:debug,store:info" (the
// settings' CRYO_LOG).  Without it, only warnings and errors are enabled.
void configure(std::string_view spec);
bool enabled(std::string_view module, Level level);

class Line {
 public:
  Line(std::string_view module, Level level) : module_(module), level_(level) {}
  ~Line();
  template <class T>
  Line& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  std::string_view module_;
  Level level_;
  std::ostringstream os_;
};

}  // namespace cryo::log

#define CRYO_LOG(module, lvl)                                              \
  if (!::cryo::log::enabled(module, ::cryo::log::Level::lvl)) {            \
  } else                                                                   \
    ::cryo::log::Line(module, ::cryo::log::Level::lvl)
