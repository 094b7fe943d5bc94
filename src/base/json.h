// Whole numbers read from JSON that another process wrote: a manifest, a
// restore record, a request, a status file.  nlohmann's get<int>() casts
// whatever number it finds, and a float out of the type's range (1e300 into
// an int) is undefined behaviour; -1 into a uint64_t becomes a huge size.
// json_int takes only a whole number that fits T.  Anything else throws
// nlohmann's own type_error or out_of_range, which the parsers already
// catch and report as damage.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace cryo {

template <std::integral T>
  requires(!std::same_as<T, bool>)
T json_int(const nlohmann::json& j) {
  if (!j.is_number_integer())
    throw nlohmann::json::type_error::create(302, std::string("a whole number was expected, not ") + j.type_name(),
                                             &j);
  // is_number_integer holds for both; the unsigned one is read as such so
  // that numbers above INT64_MAX keep their value.
  bool fits = j.is_number_unsigned() ? std::in_range<T>(j.get<uint64_t>()) : std::in_range<T>(j.get<int64_t>());
  if (!fits) throw nlohmann::json::out_of_range::create(406, "the number " + j.dump() + " is out of range", &j);
  return j.is_number_unsigned() ? static_cast<T>(j.get<uint64_t>()) : static_cast<T>(j.get<int64_t>());
}

// The member key of object j, or fallback when there is none.
template <std::integral T>
  requires(!std::same_as<T, bool>)
T json_int(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  return it == j.end() ? fallback : json_int<T>(*it);
}

}  // namespace cryo
