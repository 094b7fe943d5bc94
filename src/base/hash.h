// Content checksums: XXH3-128 over whole files, as 32 hex digits.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/result.h"

namespace cryo {

// Hashes the file at path.  progress, if given, is called with the number
// of bytes hashed so far.
Result<std::string> hash_file(const std::string& path,
                              const std::function<void(uint64_t)>& progress = {});
std::string hash_bytes(const void* data, size_t len);

}  // namespace cryo
