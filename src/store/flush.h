// The flush: making staged dumps durable in the store.
//
// For each complete dump newer than the job's latest checkpoint, oldest
// first (store/staging.h):
//   1. cut every file except CRIU's log into chunks (store/chunks.h); in
//      parallel, hash each chunk (but those a DumpFollower hashed during
//      the dump, store/follow.h), and compress and append the ones the
//      job's committed checkpoints do not hold yet to this flush's packs
//   2. copy criu-dump.log whole into checkpoints/.tmp-ID-PID/
//   3. fsync the packs this flush wrote, and their directories: every
//      chunk is on disk
//   4. write manifest.json (fsync), rename to checkpoints/ID (fsync the
//      parent), then point "latest" at it
// then apply retention (remove old manifests first) and free the chunks
// that no remaining checkpoint refers to (ChunkStore::collect).
//
// One flush runs at a time per job: each holds <job>/flush.lock.  A flush
// killed at any point leaves the previous checkpoint and "latest" intact;
// the next flush removes its leftovers (a partial manifest directory,
// packs nothing refers to) and commits the dump it was working on again,
// since that dump is still complete in its tier.  A flush that fails for
// any other reason (a full or read-only store) discards the dump: a newer
// checkpoint will be taken instead.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "store/follow.h"
#include "store/manifest.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::store {

// zstd level: tuning().zstd_level, by default -1, zstd's first fast level: it
// halves zero-rich memory as level 1 does, loses a few percent on
// floating-point matrices, and a restore decompresses at memory speed
// (bench/compress_bench; bench/NOTES.md).
int default_level();

struct FlushOptions {
  int keep = 0;     // retention after the commits, 0 = keep all
  int level = 0;    // zstd level, 0 = default_level()
  int threads = 0;  // 0 = two per core (2 * default_threads())
  ProgressFn progress;
  // Chunks a DumpFollower hashed while CRIU wrote them: the flush hashes
  // only the rest (and any whose content no longer matches).
  const Digests* digests = nullptr;
  // After each commit, with "latest" already pointing at it.
  std::function<void(const Manifest&)> committed;
  // When a dump cannot be committed (it is then discarded).
  std::function<void(const std::string& id, const Error&)> failed;
};

struct FlushResult {
  std::vector<std::string> committed;
  std::vector<std::string> removed;  // by retention
  bool busy = false;                 // another flush holds the lock (wait == false)
  // Bytes of chunks whose SHA-256 the pass computed; the others matched a
  // chunk the store has or the pass wrote (by XXH3-128) or were hashed
  // during the dump.
  uint64_t hashed_bytes = 0;
};

// Flushes every pending dump of the job.  With wait false, returns at once
// (busy) if another flush is running.  The first failure ends the pass and
// is returned.
Result<FlushResult> flush(const JobDir& job, const FastTier& tier, const FlushOptions& opts, bool wait = true);

// Whether a flush of the job is running now, and how far it is.
struct FlushState {
  bool running = false;
  std::string id;
  uint64_t done = 0, total = 0;
  double since = 0;
  int pid = 0;
};
FlushState flush_state(const JobDir& job);

// Held shared by a restore while CRIU reads a checkpoint, so that no flush
// removes it (retention) meanwhile.
Result<UniqueFd> hold_checkpoints(const JobDir& job);

// Deletes the checkpoints beyond the newest `keep` (never the latest), then
// the chunks nothing refers to: always with collect, else only when a
// checkpoint went.  The caller holds the flush lock.
Result<std::vector<std::string>> retain(const JobDir& job, int keep, bool collect = true);

}  // namespace cryo::store
