// parallel_for: runs fn(i) for i in [0, n) on up to `threads` threads
// (0: one per CPU), each thread taking the next index as it finishes one.
// The first error stops the others from taking new indices and is
// returned; fn must be safe to call concurrently for different i.
#pragma once

#include <cstddef>
#include <functional>

#include "base/result.h"

namespace cryo {

// The number of threads cryo's parallel work uses: as set (the settings'
// store.threads), else one per online CPU.
int default_threads();
void set_default_threads(int threads);

Status parallel_for(size_t n, int threads, const std::function<Status(size_t i)>& fn);

}  // namespace cryo
