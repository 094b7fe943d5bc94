// Human durations: "90", "90s", "10m", "1h30m", "2d".
#pragma once

#include <string>

#include "base/result.h"

namespace cryo {

Result<double> parse_duration(const std::string& text);
std::string format_duration(double seconds);
std::string format_bytes(double bytes);

}  // namespace cryo
