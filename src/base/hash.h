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
#include <memory>
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
// SHA-256 and XXH3-128 of data that comes in pieces: the same digests as
// sha256_bytes and xxh3_bytes of the pieces put together.  digest()
// returns it and starts over.
class PieceHasher {
 public:
  PieceHasher();
  ~PieceHasher();
  PieceHasher(const PieceHasher&) = delete;
  PieceHasher& operator=(const PieceHasher&) = delete;
  PieceHasher(PieceHasher&&) noexcept;
  PieceHasher& operator=(PieceHasher&&) noexcept;

  void update(const void* data, size_t len);
  struct Digest {
    std::string sha256, xxh3;
  };
  Digest digest();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// HMAC-SHA256 of text under key.
std::string hmac_sha256(std::string_view key, std::string_view text);
// Compares two strings in time that does not depend on where they differ.
bool equal_in_constant_time(std::string_view a, std::string_view b);

}  // namespace cryo
