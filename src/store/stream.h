// Streaming a checkpoint's images to CRIU straight from the store's chunks.
//
// A restore from the store could lay the images out first (every chunk
// read, checked and written into the fast tier), then let CRIU read them:
// two passes over every byte, and twice the memory when the fast tier is a
// tmpfs.  An ImageStream instead serves the checkpoint's images/ directory
// as a read-only FUSE file system that exists only as a file descriptor: a
// mount made with fsmount(2) and never attached to any path, so that
// nothing stays mounted if cryo dies, and nothing but the CRIU that is
// handed the descriptor can see it.
//
// Fetch threads read each file's chunks ahead of CRIU, in order, within a
// bounded window, and check each one (ChunkStore::get: SHA-256 against the
// signed manifest) before any of its bytes is handed over.  Page images
// are served with direct I/O, so they take no page cache, and a chunk's
// buffer is dropped once CRIU has read all of it.  A damaged or missing
// chunk fails CRIU's read (EIO); failure() then says which chunk.
//
// A fast copy is served the same way, for speed: CRIU's restorer reads
// the page images into the job's new memory, and a read from a tmpfs takes
// one page fault per 4 KiB page, which virtual machines make dear, while a
// direct-I/O read pins the pages without faulting (bench/NOTES.md,
// "A restore from the fast copy streams too").
//
// Nothing may run before every chunk has been checked: finish() checks
// whatever CRIU did not read and is called at CRIU's post-restore
// notification, while the restored tree is still stopped
// (job/restore.cc).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "store/manifest.h"
#include "store/store.h"

namespace cryo::store {

class ImageStream {
 public:
  // Whether this process can serve a stream: streaming is on
  // (tuning().stream), /dev/fuse opens and a FUSE file system can be
  // created (root, and the fuse module loaded).
  static Status available();
  // Whether m's images can be streamed: every file under images/ is
  // chunked and directly in it.
  static bool can_stream(const Manifest& m);
  // Starts serving checkpoint id's images (m: its signed manifest) from
  // the store's chunks or, given fast_copy (its directory), from the
  // checkpoint's fast copy, each piece checked by its XXH3-128.  Fails
  // where FUSE is not available (no /dev/fuse, or no right to mount), or
  // where the fast copy lacks a file or a chunk's XXH3.
  static Result<std::unique_ptr<ImageStream>> start(const JobDir& job, const std::string& id, const Manifest& m,
                                                    const ProgressFn& progress, const std::string& fast_copy = {});
  ~ImageStream();
  ImageStream(const ImageStream&) = delete;
  ImageStream& operator=(const ImageStream&) = delete;

  // The images directory, for CRIU's images_dir_fd.
  int images_dir() const;
  // Checks every chunk not yet read, and waits for it: the first damage
  // found (as failure()), or success once every byte has been checked.
  Status finish();
  // The first damaged or missing chunk met so far, if any.
  std::optional<Error> failure() const;

  class Impl;

 private:
  explicit ImageStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cryo::store
