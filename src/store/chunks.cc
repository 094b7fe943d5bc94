#include "store/chunks.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/hash.h"
#include "base/parallel.h"
#include "base/sys.h"

namespace cryo::store {

namespace {

constexpr size_t kBlock = 4096;  // O_DIRECT alignment

bool ends_chunk(const char* page, const Chunking& c) { return (XXH3_64bits(page, Chunking::kPage) & c.mask) == c.mask; }

// Turns "page p may end a chunk" marks into the lengths of the chunks that
// cover `size` bytes.
std::vector<uint32_t> lengths(const std::vector<bool>& candidate, uint64_t size, const Chunking& c) {
  std::vector<uint32_t> out;
  uint64_t start = 0;
  uint64_t pages = size / Chunking::kPage;
  for (uint64_t p = 0; p < pages; p++) {
    uint64_t end = (p + 1) * Chunking::kPage;
    uint64_t len = end - start;
    if (len >= c.max || (len >= c.min && candidate[p])) {
      out.push_back(static_cast<uint32_t>(len));
      start = end;
    }
  }
  if (start < size) out.push_back(static_cast<uint32_t>(size - start));
  return out;
}

struct ZstdC {
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  ~ZstdC() { ZSTD_freeCCtx(ctx); }
};
struct ZstdD {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  ~ZstdD() { ZSTD_freeDCtx(ctx); }
};

}  // namespace

std::vector<uint32_t> cut(const char* data, size_t n, const Chunking& c) {
  std::vector<bool> candidate(n / Chunking::kPage);
  for (size_t p = 0; p < candidate.size(); p++) candidate[p] = ends_chunk(data + p * Chunking::kPage, c);
  return lengths(candidate, n, c);
}

Result<std::vector<uint32_t>> cut_file(int fd, uint64_t size, const std::string& what, int threads,
                                       const Chunking& c) {
  constexpr uint64_t kWindow = 16 << 20;
  uint64_t pages = size / Chunking::kPage;
  // One byte per page rather than vector<bool>: windows are marked concurrently.
  std::vector<char> candidate(pages);
  uint64_t windows = (size + kWindow - 1) / kWindow;
  Status st = parallel_for(windows, threads, [&](size_t w) -> Status {
    thread_local std::vector<char> buf;
    buf.resize(kWindow);
    uint64_t off = w * kWindow;
    uint64_t n = std::min(kWindow, size - off) / Chunking::kPage * Chunking::kPage;
    if (n == 0) return {};
    CRYO_TRY(sys::pread_exact(fd, buf.data(), n, off, what));
    for (uint64_t p = 0; p < n / Chunking::kPage; p++)
      candidate[off / Chunking::kPage + p] = ends_chunk(buf.data() + p * Chunking::kPage, c);
    return {};
  });
  if (!st) return st.error();
  std::vector<bool> marks(candidate.begin(), candidate.end());
  return lengths(marks, size, c);
}

std::string ChunkStore::path(const std::string& hash) const { return dir_ + "/" + hash.substr(0, 2) + "/" + hash; }

bool ChunkStore::exists(const std::string& hash) const { return sys::exists(path(hash)); }

uint64_t ChunkStore::stored_size(const std::string& hash) const {
  auto st = sys::stat(path(hash));
  return st ? static_cast<uint64_t>(st->st_size) : 0;
}

Result<uint64_t> ChunkStore::put(const std::string& hash, const char* data, size_t n, int level) const {
  thread_local ZstdC z;
  // Aligned for O_DIRECT, with room to pad the frame to whole blocks.
  thread_local std::unique_ptr<char, decltype(&std::free)> out(nullptr, &std::free);
  thread_local size_t capacity = 0;
  size_t bound = (ZSTD_compressBound(n) + kBlock - 1) / kBlock * kBlock;
  if (capacity < bound) {
    out.reset(static_cast<char*>(std::aligned_alloc(kBlock, bound)));
    if (!out) return make_error("cannot allocate a compression buffer");
    capacity = bound;
  }
  size_t len = ZSTD_compressCCtx(z.ctx, out.get(), capacity, data, n, level);
  if (ZSTD_isError(len)) return make_error(std::string("cannot compress a chunk: ") + ZSTD_getErrorName(len));
  std::string final_path = path(hash);
  std::string sub = final_path.substr(0, final_path.rfind('/'));
  if (!sys::exists(sub)) CRYO_TRY(sys::mkdir_p(sub, 0700));
  std::string tmp = sub + "/.tmp-" + hash + "-" + std::to_string(::getpid());
  // O_DIRECT: the chunk goes to the disk without taking fresh page-cache
  // pages (which are slow to come by, and would all be written back by
  // the flush's syncfs anyway).  File systems without it get a buffered write.
  auto fd = sys::open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
  bool direct = fd.ok();
  if (!direct) fd = sys::open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!fd) return fd.error();
  auto fail = [&](const Error& e) {
    ::unlink(tmp.c_str());
    return e;
  };
  size_t padded = direct ? (len + kBlock - 1) / kBlock * kBlock : len;
  if (padded > len) std::memset(out.get() + len, 0, padded - len);
  if (auto w = sys::pwrite_all(fd->get(), out.get(), padded, 0, "'" + tmp + "'"); !w) return fail(w.error());
  if (padded > len && ::ftruncate(fd->get(), static_cast<off_t>(len)) < 0) return fail(sys_error("cannot size '" + tmp + "'"));
  fd->reset();
  if (auto r = sys::rename(tmp, final_path); !r) return fail(r.error());
  return static_cast<uint64_t>(len);
}

Status ChunkStore::get(const ChunkRef& ref, char* out, const std::string& what) const {
  thread_local ZstdD z;
  thread_local std::unique_ptr<char, decltype(&std::free)> in(nullptr, &std::free);
  thread_local size_t capacity = 0;
  std::string p = path(ref.hash);
  // O_DIRECT, as chunks are written: each is read once, and fresh
  // page-cache pages are slow to come by.  Else (or if the file system
  // reads it short) a buffered read.
  auto fd = sys::open(p, O_RDONLY | O_DIRECT);
  bool direct = fd.ok();
  if (!direct) fd = sys::open(p, O_RDONLY);
  if (!fd) return fd.error().context(what + " is missing its chunk " + p);
  auto st = sys::fstat(fd->get(), "'" + p + "'");
  if (!st) return st.error();
  size_t len = static_cast<size_t>(st->st_size);
  size_t padded = (len + kBlock - 1) / kBlock * kBlock;
  if (capacity < padded || !in) {
    in.reset(static_cast<char*>(std::aligned_alloc(kBlock, std::max(padded, kBlock))));
    if (!in) return make_error("cannot allocate a buffer to read chunks");
    capacity = std::max(padded, kBlock);
  }
  ssize_t got = direct ? ::pread(fd->get(), in.get(), padded, 0) : -1;
  if (got < 0 || static_cast<size_t>(got) != len) {
    if (direct) fd = sys::open(p, O_RDONLY);
    if (!fd) return fd.error().context(what + " is missing its chunk " + p);
    CRYO_TRY(sys::pread_exact(fd->get(), in.get(), len, 0, "'" + p + "'"));
  }
  size_t n = ZSTD_decompressDCtx(z.ctx, out, ref.size, in.get(), len);
  if (ZSTD_isError(n) || n != ref.size)
    return make_error(what + " is damaged: its chunk " + p + " cannot be decompressed" +
                      (ZSTD_isError(n) ? std::string(" (") + ZSTD_getErrorName(n) + ")" : " to its recorded size"));
  if (sha256_bytes(out, n) != ref.hash)
    return make_error(what + " is damaged: the checksum of its chunk " + p + " does not match");
  return {};
}

Result<std::vector<std::string>> ChunkStore::list() const {
  std::vector<std::string> out;
  if (!sys::exists(dir_)) return out;
  auto subs = sys::list_dir(dir_);
  if (!subs) return subs.error();
  for (const auto& s : *subs) {
    auto names = sys::list_dir(dir_ + "/" + s);
    if (!names) continue;
    for (const auto& n : *names)
      if (n[0] != '.') out.push_back(n);
  }
  return out;
}

Status ChunkStore::remove(const std::string& hash) const {
  if (::unlink(path(hash).c_str()) < 0 && errno != ENOENT) return sys_error("cannot remove chunk " + path(hash));
  return {};
}

void ChunkStore::remove_temporaries() const {
  auto subs = sys::list_dir(dir_);
  if (!subs) return;
  for (const auto& s : *subs)
    if (auto names = sys::list_dir(dir_ + "/" + s))
      for (const auto& n : *names)
        if (n.rfind(".tmp-", 0) == 0) ::unlink((dir_ + "/" + s + "/" + n).c_str());
}

}  // namespace cryo::store
