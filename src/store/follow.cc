#include "store/follow.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "store/store.h"
#include "base/sys.h"
#include "store/manifest.h"

namespace cryo::store {

namespace {

// A read of at most this much at a time, so that finish() waits for no
// more than hashing it.
constexpr uint64_t kWindow = 1 << 20;

}  // namespace

DumpFollower::DumpFollower(std::string images_dir, Chunking c)
    : dir_(std::move(images_dir)), chunking_(c), thread_([this] { run(); }) {}

DumpFollower::~DumpFollower() {
  if (thread_.joinable()) (void)finish();
}

Digests DumpFollower::finish() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  Digests out;
  for (auto& [name, f] : files_)
    if (!f.done.chunks.empty()) out[{f.dev, f.ino}] = std::move(f.done);
  files_.clear();
  return out;
}

bool hash_during_dump() { return tuning().hash_during_dump; }

void DumpFollower::run() {
  // Only a core nothing else wants: the dump must not wait for this.
  sched_param none{};
  if (::sched_setscheduler(0, SCHED_IDLE, &none) < 0) {
    CRYO_LOG("store", info) << "cannot give the dump follower idle priority (" << std::strerror(errno)
                            << "); the flush hashes after the dump instead";
    return;
  }
  std::vector<char> buf(kWindow);
  while (!stop_) {
    bool progressed = false;
    auto names = sys::list_dir(dir_);
    if (names)
      for (const auto& n : *names) {
        if (stop_) break;
        if (!is_page_image(n)) continue;
        File& f = files_[n];
        if (!f.fd.valid()) {
          auto fd = sys::open(dir_ + "/" + n, O_RDONLY | O_NOFOLLOW);
          if (!fd) continue;
          auto st = sys::fstat(fd->get(), n);
          if (!st || !S_ISREG(st->st_mode)) continue;
          f.dev = st->st_dev;
          f.ino = st->st_ino;
          f.fd = std::move(*fd);
        }
        progressed |= follow(f, buf);
      }
    if (progressed) continue;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(2), [this] { return stop_.load(); });
  }
}

// Hashes what was added to f since the last call, a window at a time, and
// records each chunk completed.  Returns whether there was anything.
bool DumpFollower::follow(File& f, std::vector<char>& buf) {
  bool any = false;
  while (!stop_) {
    struct stat st;
    if (::fstat(f.fd.get(), &st) < 0) return any;
    uint64_t whole = static_cast<uint64_t>(st.st_size) / Chunking::kPage * Chunking::kPage;
    if (whole <= f.read) return any;
    uint64_t n = std::min(kWindow, whole - f.read);
    if (!sys::pread_exact(f.fd.get(), buf.data(), n, f.read, dir_)) return any;
    any = true;
    for (uint64_t p = 0; p < n; p += Chunking::kPage) {
      const char* page = buf.data() + p;
      bool may_end = ends_chunk(page, chunking_);
      f.hasher.update(page, Chunking::kPage);
      f.read += Chunking::kPage;
      uint64_t len = f.read - f.start;
      if (len >= chunking_.max || (len >= chunking_.min && may_end)) {
        auto d = f.hasher.digest();
        f.done.chunks.push_back({f.start, static_cast<uint32_t>(len), std::move(d.sha256), std::move(d.xxh3)});
        f.start = f.read;
        f.done.end = f.read;
        hashed_ += len;
      }
    }
  }
  return any;
}

}  // namespace cryo::store
