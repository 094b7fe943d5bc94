#include "store/chunks.h"
#include "store/store.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <fmt/format.h>

#include "base/buffer.h"
#include "base/fault.h"
#include "base/hash.h"
#include "base/parallel.h"
#include "base/sys.h"

namespace cryo::store {

namespace {

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

bool ends_chunk(const char* page, const Chunking& c) { return (XXH3_64bits(page, Chunking::kPage) & c.mask) == c.mask; }

std::vector<uint32_t> cut(const char* data, size_t n, const Chunking& c) {
  std::vector<bool> candidate(n / Chunking::kPage);
  for (size_t p = 0; p < candidate.size(); p++) candidate[p] = ends_chunk(data + p * Chunking::kPage, c);
  return lengths(candidate, n, c);
}

Result<std::vector<uint32_t>> cut_file(int fd, uint64_t from, uint64_t size, const std::string& what, int threads,
                                       const Chunking& c) {
  // Small windows: a thread's buffer stays in its cache, and a new worker's
  // threads do not first fault in and zero 16 MiB of memory each (the cut
  // took twice as long with 16 MiB windows; bench/NOTES.md).
  constexpr uint64_t kWindow = 1 << 20;
  uint64_t rest = size > from ? size - from : 0;
  uint64_t pages = rest / Chunking::kPage;
  // One byte per page rather than vector<bool>: windows are marked concurrently.
  std::vector<char> candidate(pages);
  uint64_t windows = (rest + kWindow - 1) / kWindow;
  Status st = parallel_for(windows, threads, [&](size_t w) -> Status {
    thread_local ScratchBuffer scratch;
    char* buf = scratch.get(kWindow);
    if (!buf) return make_error("cannot allocate a buffer to cut " + what + " into chunks");
    uint64_t off = w * kWindow;
    uint64_t n = std::min(kWindow, rest - off) / Chunking::kPage * Chunking::kPage;
    if (n == 0) return {};
    CRYO_TRY(sys::pread_exact(fd, buf, n, from + off, what));
    for (uint64_t p = 0; p < n / Chunking::kPage; p++)
      candidate[off / Chunking::kPage + p] = ends_chunk(buf + p * Chunking::kPage, c);
    return {};
  });
  if (!st) return st.error();
  std::vector<bool> marks(candidate.begin(), candidate.end());
  return lengths(marks, rest, c);
}

namespace {

uint64_t whole_blocks(uint64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

}  // namespace

std::string ChunkStore::legacy_path(const std::string& hash) const {
  return dir_ + "/" + hash.substr(0, 2) + "/" + hash;
}

bool ChunkStore::exists(const ChunkRef& ref) const {
  return sys::exists(ref.pack.empty() ? legacy_path(ref.hash) : pack_path(ref.pack));
}

Result<ChunkRef> PackWriter::put(const char* data, size_t n, int level) {
  thread_local ZstdC z;
  if (!fd_.valid() || end_ >= ChunkStore::kPackLimit) {
    if (fd_.valid()) {
      CRYO_TRY(write_out());
      full_.emplace_back(std::move(fd_), pack_);
    }
    pack_ = prefix_ + "-" + std::to_string(++next_) + ".pack";
    std::string path = store_.pack_path(pack_);
    std::string dir = path.substr(0, path.rfind('/'));
    if (!sys::exists(dir)) CRYO_TRY(sys::mkdir_p(dir, 0700));
    // O_DIRECT: chunks go to the disk without taking fresh page-cache
    // pages (slow to come by, and all to be written back before the
    // commit anyway).  File systems without it get buffered writes.  A
    // pack of this name can only be what a flush of the same checkpoint
    // left when it died: nothing refers to it.
    auto fd = sys::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (!fd) fd = sys::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!fd) return fd.error();
    fd_ = std::move(*fd);
    end_ = 0;
  }
  // The frame is compressed into the buffer, after what is gathered if its
  // largest size fits, else after writing that out.  The buffer holds
  // kWriteBytes (more only for a chunk larger than that), so it never
  // grows while it holds frames.
  size_t bound = whole_blocks(ZSTD_compressBound(n));
  size_t room = std::max(kWriteBytes, bound);
  if (gathered_ > 0 && gathered_ + bound > room) CRYO_TRY(write_out());
  char* base = gather_.get(room);
  if (!base) return make_error("cannot allocate a compression buffer");
  char* buf = base + gathered_;
  size_t len = ZSTD_compressCCtx(z.ctx, buf, bound, data, n, level);
  if (ZSTD_isError(len)) return make_error(std::string("cannot compress a chunk: ") + ZSTD_getErrorName(len));
  // Every frame starts on a block, so it can be read with O_DIRECT.
  size_t padded = whole_blocks(len);
  std::memset(buf + len, 0, padded - len);
  ChunkRef r;
  r.pack = pack_;
  r.offset = end_;
  r.stored = static_cast<uint32_t>(len);
  end_ += padded;
  gathered_ += padded;
  if (gathered_ >= kWriteBytes) CRYO_TRY(write_out());
  return r;
}

Status PackWriter::write_out() {
  if (gathered_ == 0) return {};
  CRYO_TRY(sys::pwrite_all(fd_.get(), gather_.get(gathered_), gathered_, end_ - gathered_,
                           "'" + store_.pack_path(pack_) + "'"));
  gathered_ = 0;
  return {};
}

Status PackWriter::sync() {
  if (fd_.valid()) {
    CRYO_TRY(write_out());
    full_.emplace_back(std::move(fd_), pack_);
  }
  for (auto& [fd, pack] : full_) CRYO_TRY(sys::fsync_fd(fd.get(), "'" + store_.pack_path(pack) + "'"));
  full_.clear();
  return {};
}

Status ChunkStore::get(const ChunkRef& ref, char* out, const std::string& what) const {
  thread_local ZstdD z;
  thread_local ScratchBuffer in;
  bool packed = !ref.pack.empty();
  std::string p = packed ? pack_path(ref.pack) : legacy_path(ref.hash);
  std::string where = packed ? fmt::format("{} in {} (bytes {}..{})", ref.hash, p, ref.offset, ref.offset + ref.stored) : p;
  // O_DIRECT, as chunks are written: each is read once, and fresh
  // page-cache pages are slow to come by.  Else (or if the file system
  // reads it short) a buffered read.
  auto fd = sys::open(p, O_RDONLY | O_DIRECT);
  bool direct = fd.ok();
  if (!direct) fd = sys::open(p, O_RDONLY);
  if (!fd) return fd.error().context(what + " is missing its chunk " + where).of_kind(ErrorKind::corrupt);
  size_t len = ref.stored;
  if (!packed) {
    auto st = sys::fstat(fd->get(), "'" + p + "'");
    if (!st) return st.error();
    len = static_cast<size_t>(st->st_size);
  }
  char* buf = in.get(whole_blocks(len));  // aligned for O_DIRECT
  if (!buf) return make_error("cannot allocate a buffer to read chunks");
  ssize_t got = direct ? ::pread(fd->get(), buf, whole_blocks(len), static_cast<off_t>(ref.offset)) : -1;
  if (got < 0 || static_cast<size_t>(got) < len) {
    if (direct) fd = sys::open(p, O_RDONLY);
    if (!fd) return fd.error().context(what + " is missing its chunk " + where).of_kind(ErrorKind::corrupt);
    if (auto r = sys::pread_exact(fd->get(), buf, len, ref.offset, "'" + p + "'"); !r)
      return r.error().context(what + " is damaged: its chunk " + where + " is cut short").of_kind(ErrorKind::corrupt);
  }
  size_t n = ZSTD_decompressDCtx(z.ctx, out, ref.size, buf, len);
  if (ZSTD_isError(n) || n != ref.size)
    return make_error(ErrorKind::corrupt, what + " is damaged: its chunk " + where + " cannot be decompressed" +
                      (ZSTD_isError(n) ? std::string(" (") + ZSTD_getErrorName(n) + ")" : " to its recorded size"));
  if (sha256_bytes(out, n) != ref.hash)
    return make_error(ErrorKind::corrupt, what + " is damaged: the checksum of its chunk " + where + " does not match");
  return {};
}

Result<size_t> ChunkStore::collect(const std::vector<ChunkRef>& live) const {
  std::set<std::string> files;                                         // format 3 chunks
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> used;  // pack -> [begin, end)
  for (const auto& r : live) {
    if (r.pack.empty())
      files.insert(r.hash);
    else
      used[r.pack].emplace_back(r.offset, r.offset + frame_bytes(r));
  }
  size_t removed = 0;
  auto remove = [&](const std::string& path) -> Status {
    if (::unlink(path.c_str()) < 0 && errno != ENOENT) return sys_error("cannot remove '" + path + "'");
    if (++removed == 2) fault_point("flush.gc");
    return {};
  };
  if (!sys::exists(dir_)) return removed;
  auto subs = sys::list_dir(dir_);
  if (!subs) return subs.error();
  for (const auto& sub : *subs) {
    if (sub == "packs") continue;
    auto names = sys::list_dir(dir_ + "/" + sub);
    if (!names) continue;
    for (const auto& n : *names)
      if (is_temporary(n) || !files.count(n)) CRYO_TRY(remove(dir_ + "/" + sub + "/" + n));
  }
  if (!sys::exists(dir_ + "/packs")) return removed;
  auto packs = sys::list_dir(dir_ + "/packs");
  if (!packs) return packs.error();
  for (const auto& name : *packs) {
    std::string path = pack_path(name);
    auto it = used.find(name);
    if (it == used.end()) {
      CRYO_TRY(remove(path));
      continue;
    }
    // The gaps between the frames still in use, and after the last.
    auto fd = sys::open(path, O_WRONLY);
    if (!fd) return fd.error();
    auto st = sys::fstat(fd->get(), "'" + path + "'");
    if (!st) return st.error();
    auto& ranges = it->second;
    std::sort(ranges.begin(), ranges.end());
    ranges.emplace_back(static_cast<uint64_t>(st->st_size), static_cast<uint64_t>(st->st_size));
    uint64_t at = 0;
    for (const auto& [begin, end] : ranges) {
      if (begin > at &&
          ::fallocate(fd->get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(at),
                      static_cast<off_t>(begin - at)) < 0) {
        // Without holes the space comes back when the whole pack goes.
        if (errno == EOPNOTSUPP || errno == ENOSYS) break;
        return sys_error("cannot free the unused parts of '" + path + "'");
      }
      at = std::max(at, end);
    }
  }
  return removed;
}

}  // namespace cryo::store
