// Hashing a dump's page images while CRIU writes them ($CRYO_HASH_DURING_DUMP=1).
//
// The flush names each chunk by its SHA-256, the bulk of its work.  CRIU
// dumps on one core; a DumpFollower takes another: a thread at SCHED_IDLE
// priority, so that it runs only on a core that nothing else wants, reads
// each pages-*.img as it grows, cuts it where the flush would
// (store/chunks.h) and hashes every chunk it has seen whole.  The flush
// then hashes only what the follower had not reached when the dump ended.
// A checkpoint is then durable sooner, but the job stays frozen longer,
// even at idle priority (bench/NOTES.md), so it is off unless asked for.
//
// CRIU writes an image file front to back and never goes back (which is
// what lets its image streamer send images down a pipe), so bytes below a
// page image's current size are final.  The flush still does not take
// that on trust: it reads every chunk again to compress it, and uses a
// follower's SHA-256 only if the XXH3-128 of what it read matches the
// follower's; otherwise it hashes the chunk itself.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/hash.h"
#include "store/chunks.h"

namespace cryo::store {

struct ChunkDigest {
  uint64_t offset = 0;
  uint32_t size = 0;
  std::string sha256, xxh3;
};

// The chunks of one file, in order, covering its first `end` bytes.
struct FileDigests {
  uint64_t end = 0;
  std::vector<ChunkDigest> chunks;
};

// By the file's (device, inode): the dump's directory is renamed once
// complete (store/staging.h), its files stay the same.
using Digests = std::map<std::pair<dev_t, ino_t>, FileDigests>;

// Whether the settings (CRYO_HASH_DURING_DUMP) ask for a DumpFollower
// during dumps: tuning().hash_during_dump.
bool hash_during_dump();

class DumpFollower {
 public:
  // Starts following the page images that appear in images_dir.
  explicit DumpFollower(std::string images_dir, Chunking c = {});
  ~DumpFollower();
  DumpFollower(const DumpFollower&) = delete;
  DumpFollower& operator=(const DumpFollower&) = delete;

  // Bytes of page images hashed into completed chunks so far.
  uint64_t hashed() const { return hashed_; }
  // Stops at once and returns what it hashed.  Call before the files can
  // be removed or renamed away.
  Digests finish();

 private:
  struct File {
    UniqueFd fd;
    uint64_t read = 0;   // bytes hashed so far (whole pages)
    uint64_t start = 0;  // where the chunk being hashed starts
    PieceHasher hasher;  // of [start, read)
    dev_t dev = 0;
    ino_t ino = 0;
    FileDigests done;
  };
  void run();
  bool follow(File& f, std::vector<char>& buf);

  std::string dir_;
  Chunking chunking_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> hashed_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, File> files_;
  std::thread thread_;
};

}  // namespace cryo::store
