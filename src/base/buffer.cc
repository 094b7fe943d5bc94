#include "base/buffer.h"

#include <sys/mman.h>

#include <cstdint>
#include <utility>

namespace cryo {

namespace {
constexpr size_t kHuge = 2 << 20;
size_t round_up(size_t n) { return (n + kHuge - 1) / kHuge * kHuge; }
}  // namespace

ScratchBuffer::ScratchBuffer(ScratchBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

ScratchBuffer& ScratchBuffer::operator=(ScratchBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

ScratchBuffer::~ScratchBuffer() { release(); }

void ScratchBuffer::release() {
  if (data_) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

char* ScratchBuffer::get(size_t n) {
  if (data_ && n <= size_) return data_;
  release();
  size_t size = round_up(n == 0 ? 1 : n);
  // Mapped with room to start on a 2 MiB boundary: only whole, aligned
  // 2 MiB ranges can be huge pages.
  size_t map_size = size + kHuge;
  void* p = ::mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto start = reinterpret_cast<uintptr_t>(p);
  auto aligned = (start + kHuge - 1) / kHuge * kHuge;
  // The slack before and after the aligned range goes back at once.
  if (aligned > start) ::munmap(p, aligned - start);
  size_t tail = (start + map_size) - (aligned + size);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + size), tail);
  data_ = reinterpret_cast<char*>(aligned);
  size_ = size;
  (void)::madvise(data_, size, MADV_HUGEPAGE);  // EINVAL where THP is not built in: ordinary pages then
  return data_;
}

}  // namespace cryo
