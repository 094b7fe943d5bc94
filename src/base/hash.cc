#include "base/hash.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <memory>
#include <vector>

#include "base/sys.h"

namespace cryo {

namespace {
std::string hex(XXH128_hash_t h) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (unsigned char b : c.digest) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}
}  // namespace

Result<std::string> hash_file(const std::string& path, const std::function<void(uint64_t)>& progress) {
  auto fd = sys::open(path, O_RDONLY);
  if (!fd) return fd.error();
  ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(), XXH3_freeState);
  XXH3_128bits_reset(st.get());
  std::vector<char> buf(1 << 20);
  uint64_t done = 0;
  for (;;) {
    ssize_t n = ::read(fd->get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("cannot read '" + path + "'");
    }
    if (n == 0) break;
    XXH3_128bits_update(st.get(), buf.data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
    if (progress) progress(done);
  }
  return hex(XXH3_128bits_digest(st.get()));
}

std::string hash_bytes(const void* data, size_t len) { return hex(XXH3_128bits(data, len)); }

}  // namespace cryo
