#include "base/parallel.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace cryo {

namespace {
int g_threads = 0;
}  // namespace

void set_default_threads(int threads) { g_threads = threads; }

int default_threads() {
  if (g_threads > 0) return g_threads;
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

Status parallel_for(size_t n, int threads, const std::function<Status(size_t i)>& fn) {
  if (threads <= 0) threads = default_threads();
  size_t workers = std::min<size_t>(static_cast<size_t>(threads), n);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::optional<Error> first;
  auto work = [&] {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      size_t i = next.fetch_add(1);
      if (i >= n) return;
      Status st = fn(i);
      if (!st) {
        std::lock_guard<std::mutex> g(mu);
        if (!first) first = st.error();
        failed = true;
        return;
      }
    }
  };
  if (workers <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 1; t < workers; t++) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
  }
  if (first) return *first;
  return {};
}

}  // namespace cryo
