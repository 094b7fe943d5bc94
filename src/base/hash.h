// Content checksums, as lowercase hex.
//
// XXH3-128 (32 hex digits) is fast and finds damage: a flipped bit, a
// torn write.  It is no defence against someone who changes data on
// purpose, who can make other data with the same XXH3.  SHA-256 (64 hex
// digits) is: cryo names the store's chunks by it, and signs manifests with
// HMAC-SHA256 (store/signing.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace cryo {

// XXH3-128.
std::string xxh3_bytes(const void* data, size_t len);

// SHA-256.
std::string sha256_bytes(const void* data, size_t len);
// SHA-256 of the file at path.  progress, if given, is called with the
// number of bytes hashed so far.
Result<std::string> sha256_file(const std::string& path, const std::function<void(uint64_t)>& progress = {});
// HMAC-SHA256 of text under key.
std::string hmac_sha256(std::string_view key, std::string_view text);
// Compares two strings in time that does not depend on where they differ.
bool equal_in_constant_time(std::string_view a, std::string_view b);

}  // namespace cryo
