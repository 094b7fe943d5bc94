// Reading a checkpoint back: verifying it, and laying out its files for
// CRIU and cryo at a restore.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "store/staging.h"
#include "store/store.h"
#include "store/stream.h"

namespace cryo::store {

// Checks checkpoint id's signature (store/signing.h) and every byte against
// its manifest: every chunk is decompressed and hashed.  The error names
// the damaged file (and chunk).
Status verify(const JobDir& job, const std::string& id, const ProgressFn& progress = {}, int threads = 0);

// A fast copy's file at path, opened if it has the manifest's size.
Result<UniqueFd> open_copy_file(const std::string& path, uint64_t size);
// Reads the piece of a fast copy's file (fd, at path) that holds chunk ref
// at off into out, and checks it against the chunk's XXH3-128.
Status read_copy_piece(int fd, const std::string& path, const ChunkRef& ref, uint64_t off, char* out);

// The hint of every error that calls a checkpoint damaged.
std::string damaged_hint(const JobDir& job);

// A checkpoint's files (images/, files/) in one directory, every byte
// checked against the manifest.
struct Materialized {
  std::string dir;
  std::string source;   // "fast copy" or "store"
  std::string warning;  // why a fast copy was not used, if one was refused
  UniqueFd hold;        // keeps the files from being removed while held
  bool temporary = false;
  // Set when materialize was asked to defer_pages and the fast copy is
  // used in place (no FUSE): checks its page images, which is then still
  // to be done.  CRIU may read them meanwhile, but the restored job must
  // not run before this has passed.
  std::function<Status()> check_pages;
  // Set when materialize was asked to defer_pages and FUSE allows: the
  // images are streamed to CRIU from the fast copy or the store's chunks
  // (store/stream.h), and the restored job must not run before
  // stream->finish() has passed.  CRIU reads none of them from dir.
  std::unique_ptr<ImageStream> stream;
};

// Uses a complete fast copy of the checkpoint when there is one (unless
// prefer_fast is false) and it matches the manifest; otherwise reassembles
// the files from the store's chunks, in parallel, checking each chunk as
// it is read, into a new directory in the fast tier if they fit, else in
// the store.  Fails, having changed nothing, if the checkpoint is damaged.
// With defer_pages, either copy is streamed to CRIU, each piece checked as
// it is served, where FUSE allows; without FUSE, a fast copy's page images
// (nearly all of its bytes) are left for the caller to check with
// check_pages while CRIU restores, and the store's copy is laid out.
// m is the checkpoint's manifest, its signature checked
// (load_signed_manifest).
Result<Materialized> materialize(const JobDir& job, const FastTier& tier, const std::string& id, const Manifest& m,
                                 bool prefer_fast, const ProgressFn& progress = {}, bool defer_pages = false);
// Removes a temporary directory and drops the hold.
void release(Materialized& m);

}  // namespace cryo::store
