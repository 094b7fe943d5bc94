// Content-addressed chunks: how a checkpoint's files are kept in the
// durable store.
//
// A file is cut into chunks at page boundaries chosen by the pages'
// content (a page whose XXH3-64 has its low bits set ends a chunk, within
// a minimum and maximum size), so that a page inserted into or removed
// from CRIU's page image shifts no chunk after it, and identical runs of
// pages in two checkpoints, or in two ranks' images, become identical
// chunks.  Each chunk is stored once per job, compressed with zstd, and
// known by the SHA-256 of its raw content.
//
// Chunks are appended to pack files, a few per flush (one per writer
// thread, a new one every kPackLimit bytes), each zstd frame padded to a
// 4 KiB block so that it is written and read with O_DIRECT:
//
//   <job>/chunks/packs/0003-4711-1.pack
//
// A file per chunk would cost a file creation per 640 KiB: an inode for
// each, thousands per GiB, which a parallel file system's metadata server
// and its inode quotas feel, and which ext4 without a journal makes slow
// after many deletions (bench/NOTES.md).  The signed manifest says
// where each chunk is (pack, offset, length), so no index is kept beside
// the packs.  The flush syncs the packs it wrote (and their directory)
// before it commits a manifest that refers to them.  Reading a chunk decompresses it and checks its SHA-256, so a flipped byte
// anywhere is caught before use, and content made to pass for it cannot be
// (the signed manifest fixes the names; store/signing.h).
//
// Retention removes a pack once no checkpoint refers to anything in it,
// and punches the unreferenced ranges out of the packs still in use, so
// their space comes back without copying.
//
// Format 3 manifests named chunks stored as files of their own,
// <job>/chunks/ab/ab0123...; they are still read and collected.
//
// ChunkStore is safe to use from several threads at once; a PackWriter is
// used by one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/buffer.h"
#include "base/fd.h"
#include "base/result.h"

namespace cryo::store {

struct ChunkRef {
  std::string hash;   // SHA-256 of the raw content, hex: the chunk's name
  uint32_t size = 0;  // raw bytes
  std::string xxh3;   // XXH3-128 of the raw content, hex: a quick check of a node-local copy
  // Where its zstd frame is: a pack, the frame's offset there (a multiple
  // of 4 KiB) and its length.  No pack: a format 3 chunk, a file of its own.
  std::string pack;
  uint64_t offset = 0;
  uint32_t stored = 0;
};

// Frames start on blocks of this size in their packs: O_DIRECT's alignment.
inline constexpr uint64_t kBlock = 4096;
// The bytes a chunk's frame takes in its pack: its length, padded to a block.
inline uint64_t frame_bytes(const ChunkRef& r) { return (r.stored + kBlock - 1) / kBlock * kBlock; }

struct Chunking {
  static constexpr size_t kPage = 4096;
  size_t min = 128 << 10;
  size_t max = 4 << 20;
  uint64_t mask = 127;  // a page ends a chunk when (hash & mask) == mask: 640 KiB apart on average
};

// Whether this page may end a chunk.  Where chunks end follows from this
// alone: the first page at or past c.min bytes from the chunk's start that
// may end it, else the page that reaches c.max.
bool ends_chunk(const char* page, const Chunking& c);
// The lengths of the chunks that cover data[0, n), in order.
std::vector<uint32_t> cut(const char* data, size_t n, const Chunking& c = {});
// The same for the bytes [from, size) of a file read through fd, in
// parallel windows; a chunk starts at `from`, a multiple of the page size.
Result<std::vector<uint32_t>> cut_file(int fd, uint64_t from, uint64_t size, const std::string& what, int threads,
                                       const Chunking& c = {});

class ChunkStore {
 public:
  static constexpr uint64_t kPackLimit = 256 << 20;  // a writer starts a new pack past this

  explicit ChunkStore(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const { return dir_; }
  std::string pack_path(const std::string& pack) const { return dir_ + "/packs/" + pack; }
  // A format 3 chunk's file.
  std::string legacy_path(const std::string& hash) const;
  // Whether what ref points at is present (its pack, or its file).
  bool exists(const ChunkRef& ref) const;
  // Reads the chunk into out (ref.size bytes) and checks its content
  // against its hash.  `what` names the data it belongs to, for errors.
  Status get(const ChunkRef& ref, char* out, const std::string& what) const;
  // Removes the packs and format 3 chunk files that nothing in `live`
  // points at, and punches the ranges that nothing points at out of the
  // packs that stay.  Call only under the job's flush lock, as it removes
  // packs a flush is writing.  Returns how many files it removed.
  Result<size_t> collect(const std::vector<ChunkRef>& live) const;

 private:
  std::string dir_;
};

// Appends chunks to packs named <prefix>-N.pack.  Not thread-safe: a flush
// keeps one per thread.  Frames gather in a buffer of kWriteBytes and go
// to the pack when the next one might not fit: writes of 4 to 8 MiB, with
// chunks of at most 4 MiB.  This disk took 1.0-1.45 s for 1 GiB of O_DIRECT
// writes of 640 KiB (a chunk, on average) from four writers, and 0.5-0.7 s
// in writes of 4 to 16 MiB (bench/NOTES.md).
class PackWriter {
 public:
  static constexpr size_t kWriteBytes = 8 << 20;

  PackWriter(ChunkStore store, std::string prefix) : store_(std::move(store)), prefix_(std::move(prefix)) {}
  // Compresses data with zstd at `level` and appends it (not yet written
  // out, let alone synced).  Returns where it goes; the chunk's hash and
  // xxh3 are the caller's.
  Result<ChunkRef> put(const char* data, size_t n, int level);
  // Writes out what is gathered and makes every pack it wrote durable.
  Status sync();

 private:
  // Writes the gathered frames to the current pack.
  Status write_out();

  ChunkStore store_;
  std::string prefix_;
  int next_ = 0;
  std::string pack_;
  UniqueFd fd_;
  std::vector<std::pair<UniqueFd, std::string>> full_;  // packs it went past, still to be synced
  uint64_t end_ = 0;      // the pack's length, with what is gathered
  ScratchBuffer gather_;  // kWriteBytes, aligned for O_DIRECT; frames for [end_ - gathered_, end_)
  size_t gathered_ = 0;
};

}  // namespace cryo::store
