#include "base/log.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

namespace cryo::log {

namespace {
Level parse_level(const std::string& s) {
  if (s == "debug") return Level::debug;
  if (s == "info") return Level::info;
  if (s == "warn") return Level::warn;
  return Level::error;
}

struct Config {
  Level all = Level::warn;
  std::map<std::string, Level, std::less<>> modules;
};

Config& config() {
  static Config c;
  return c;
}
}  // namespace

void configure(std::string_view text) {
  Config c;
  std::string spec(text);
  if (!spec.empty()) {
    size_t pos = 0;
    while (pos <= spec.size()) {
      size_t end = spec.find(',', pos);
      std::string item = spec.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      size_t colon = item.find(':');
      if (colon == std::string::npos)
        c.all = parse_level(item);
      else
        c.modules[item.substr(0, colon)] = parse_level(item.substr(colon + 1));
      if (end == std::string::npos) break;
      pos = end + 1;
    }
  }
  config() = std::move(c);
}

bool enabled(std::string_view module, Level level) {
  const Config& c = config();
  auto it = c.modules.find(module);
  Level limit = it == c.modules.end() ? c.all : it->second;
  return level <= limit;
}

Line::~Line() {
  static const char* names[] = {"error", "warning", "info", "debug"};
  std::string s = "cryo[" + std::to_string(::getpid()) + "] " + std::string(module_) + " " +
                  names[static_cast<int>(level_)] + ": " + os_.str() + "\n";
  ::write(STDERR_FILENO, s.data(), s.size());
}

}  // namespace cryo::log
