// ScratchBuffer: memory that a thread reuses for one chunk or window at a
// time.  get(n) gives at least n bytes whose contents are unspecified: it
// never zeroes them and, when it grows, never copies the old ones.  The
// memory is asked for in 2 MiB steps with MADV_HUGEPAGE: a 4 MiB buffer
// then costs two page faults instead of 1024, and a fault is dear on a
// virtual machine (bench/NOTES.md, "Scratch memory in huge pages").  Where the kernel
// has them off, the memory is ordinary pages.  Move-only.
#pragma once

#include <cstddef>

namespace cryo {

class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(ScratchBuffer&& o) noexcept;
  ScratchBuffer& operator=(ScratchBuffer&& o) noexcept;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer();

  // At least n bytes, aligned to 2 MiB (so fit for O_DIRECT), or nullptr
  // when the memory cannot be had.  Earlier pointers are invalid after a
  // call that grows it.
  char* get(size_t n);
  size_t capacity() const { return size_; }

 private:
  void release();
  char* data_ = nullptr;  // mapped, 2 MiB aligned
  size_t size_ = 0;
};

}  // namespace cryo
