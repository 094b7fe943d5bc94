#include "base/duration.h"

#include <fmt/format.h>

#include <cctype>

namespace cryo {

Result<double> parse_duration(const std::string& text) {
  auto bad = [&] {
    return make_error("invalid duration '" + text + "'")
        .with_hint("use a number with a unit, for example 30s, 10m, 2h or 1h30m");
  };
  if (text.empty()) return bad();
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) i++;
    if (start == i) return bad();
    double v = std::stod(text.substr(start, i - start));
    char unit = i < text.size() ? text[i++] : 's';
    switch (unit) {
      case 's': total += v; break;
      case 'm': total += v * 60; break;
      case 'h': total += v * 3600; break;
      case 'd': total += v * 86400; break;
      default: return bad();
    }
  }
  if (total <= 0)
    return make_error("duration '" + text + "' is zero").with_hint("give more than zero, for example 30s");
  return total;
}

std::string format_duration(double s) {
  if (s < 1) return fmt::format("{:.0f} ms", s * 1000);
  if (s < 60) return fmt::format("{:.1f} s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return fmt::format("{}h{:02}m", static_cast<int>(s) / 3600, static_cast<int>(s) % 3600 / 60);
}

std::string format_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    u++;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

}  // namespace cryo
