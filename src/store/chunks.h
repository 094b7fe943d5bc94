// Content-addressed chunks: how a checkpoint's files are kept in the
// durable store.
//
// A file is cut into chunks at page boundaries chosen by the pages'
// content (a page whose XXH3-64 has its low bits set ends a chunk, within
// a minimum and maximum size), so that a page inserted into or removed
// from CRIU's page image shifts no chunk after it, and identical runs of
// pages in two checkpoints, or in two ranks' images, become identical
// chunks.  Each chunk is stored once per job, compressed with zstd, under
// the SHA-256 of its raw content:
//
//   <job>/chunks/ab/ab0123...      (64 hex digits; a zstd frame)
//
// A chunk is written to a temporary name and renamed, never synced on its
// own: the flush syncs the whole file system once before it commits a
// manifest that refers to the chunk.  Reading a chunk decompresses it and
// checks its SHA-256, so a flipped byte anywhere is caught before use, and
// content made to pass for it cannot be (the signed manifest fixes the
// names; store/signing.h).
//
// ChunkStore is safe to use from several threads at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace cryo::store {

struct ChunkRef {
  std::string hash;   // SHA-256 of the raw content, hex: the chunk's name
  uint32_t size = 0;  // raw bytes
  std::string xxh3;   // XXH3-128 of the raw content, hex: a quick check of a node-local copy
};

struct Chunking {
  static constexpr size_t kPage = 4096;
  size_t min = 128 << 10;
  size_t max = 4 << 20;
  uint64_t mask = 127;  // a page ends a chunk when (hash & mask) == mask: 640 KiB apart on average
};

// The lengths of the chunks that cover data[0, n), in order.
std::vector<uint32_t> cut(const char* data, size_t n, const Chunking& c = {});
// The same for a file of `size` bytes read through fd, in parallel windows.
Result<std::vector<uint32_t>> cut_file(int fd, uint64_t size, const std::string& what, int threads,
                                       const Chunking& c = {});

class ChunkStore {
 public:
  explicit ChunkStore(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& hash) const;
  bool exists(const std::string& hash) const;
  // Compresses data with zstd at `level` and stores it under hash (atomic,
  // not synced).  Returns the bytes stored.
  Result<uint64_t> put(const std::string& hash, const char* data, size_t n, int level) const;
  // Reads the chunk into out (ref.size bytes) and checks its content
  // against its hash.  `what` names the data it belongs to, for errors.
  Status get(const ChunkRef& ref, char* out, const std::string& what) const;
  // The stored (compressed) size of a chunk, 0 if absent.
  uint64_t stored_size(const std::string& hash) const;
  // Hashes of every chunk present.
  Result<std::vector<std::string>> list() const;
  Status remove(const std::string& hash) const;
  // Removes temporary files of writers that died.  Call only while no
  // writer runs (under the job's flush lock).
  void remove_temporaries() const;

 private:
  std::string dir_;
};

}  // namespace cryo::store
