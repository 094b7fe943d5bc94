#include "base/hash.h"

#include <fcntl.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "base/sys.h"

namespace cryo {

namespace {

std::string hex(const unsigned char* bytes, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; i++) {
    s += digits[bytes[i] >> 4];
    s += digits[bytes[i] & 15];
  }
  return s;
}

std::string hex(XXH128_hash_t h) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  return hex(c.digest, sizeof c.digest);
}

// Feeds the file at path to update() a MiB at a time.
Status read_through(const std::string& path, const std::function<void(const char*, size_t)>& update,
                    const std::function<void(uint64_t)>& progress) {
  auto fd = sys::open(path, O_RDONLY);
  if (!fd) return fd.error();
  ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<char> buf(1 << 20);
  uint64_t done = 0;
  for (;;) {
    ssize_t n = ::read(fd->get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("cannot read '" + path + "'");
    }
    if (n == 0) return {};
    update(buf.data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
    if (progress) progress(done);
  }
}

}  // namespace

std::string xxh3_bytes(const void* data, size_t len) { return hex(XXH3_128bits(data, len)); }

std::string sha256_bytes(const void* data, size_t len) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(data, len, md, &n, EVP_sha256(), nullptr) != 1) std::abort();  // only fails out of memory
  return hex(md, n);
}

struct PieceHasher::State {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha{EVP_MD_CTX_new(), EVP_MD_CTX_free};
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> xxh{XXH3_createState(), XXH3_freeState};
  void reset() {
    // Both only fail out of memory.
    if (!sha || !xxh || EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr) != 1 || XXH3_128bits_reset(xxh.get()) != XXH_OK)
      std::abort();
  }
};

PieceHasher::PieceHasher() : s_(std::make_unique<State>()) { s_->reset(); }
PieceHasher::~PieceHasher() = default;
PieceHasher::PieceHasher(PieceHasher&&) noexcept = default;
PieceHasher& PieceHasher::operator=(PieceHasher&&) noexcept = default;

void PieceHasher::update(const void* data, size_t len) {
  EVP_DigestUpdate(s_->sha.get(), data, len);
  XXH3_128bits_update(s_->xxh.get(), data, len);
}

PieceHasher::Digest PieceHasher::digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(s_->sha.get(), md, &n);
  Digest d{hex(md, n), hex(XXH3_128bits_digest(s_->xxh.get()))};
  s_->reset();
  return d;
}

Result<std::string> sha256_file(const std::string& path, const std::function<void(uint64_t)>& progress) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return make_error("cannot start SHA-256");
  CRYO_TRY(read_through(path, [&](const char* d, size_t n) { EVP_DigestUpdate(ctx.get(), d, n); }, progress));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &n);
  return hex(md, n);
}

std::string hmac_sha256(std::string_view key, std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(text.data()),
            text.size(), md, &n))
    std::abort();  // only fails out of memory
  return hex(md, n);
}

bool equal_in_constant_time(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace cryo
