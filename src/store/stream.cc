#include "store/stream.h"

#define FUSE_USE_VERSION 34
#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <linux/mount.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>
#include <fmt/format.h>

#include "base/buffer.h"
#include "base/fault.h"
#include "base/hash.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/parallel.h"
#include "base/sys.h"
#include "store/reader.h"

namespace cryo::store {

namespace {

// Bytes fetched ahead of CRIU, over all files: enough to keep the disk
// busy while CRIU copies, little next to a job's memory.
constexpr uint64_t kWindow = 128 << 20;
// Threads answering CRIU's requests; a request waits for its chunks.
constexpr int kServers = 4;
// The buffers fetched chunks go into, reused: chunks are at most this big.
const size_t kBufferSize = Chunking{}.max;
constexpr const char* kImages = "images/";

struct Piece {
  uint64_t off = 0;
  const ChunkRef* ref = nullptr;
  enum class State { idle, fetching, ready } state = State::idle;
  std::shared_ptr<char> data;  // while ready
  uint64_t served = 0;         // bytes handed to CRIU
  bool checked = false;        // fetched and checked at least once
  bool wanted = false;         // queued for a reader
  int waiting = 0;             // readers waiting for it
};

struct File {
  std::string name;  // in images/
  uint64_t size = 0;
  bool pages = false;  // a page image: direct I/O, and dropped once read
  std::vector<Piece> pieces;
  size_t next = 0;   // the next piece to fetch ahead of CRIU
  uint64_t pos = 0;  // where CRIU read last
};

}  // namespace

class ImageStream::Impl {
 public:
  Impl(const JobDir& job, std::string id, Manifest m, ProgressFn progress, std::string fast_copy)
      : chunks_(job.chunks()),
        job_(job),
        id_(std::move(id)),
        m_(std::move(m)),
        progress_(std::move(progress)),
        fast_copy_(std::move(fast_copy)) {
    for (const auto& f : m_.files) {
      if (f.path.rfind(kImages, 0) != 0) continue;
      File file;
      file.name = f.path.substr(std::string(kImages).size());
      file.size = f.size;
      file.pages = is_page_image(f.path);
      uint64_t off = 0;
      for (const auto& c : f.chunks) {
        Piece p;
        p.off = off;
        p.ref = &c;
        file.pieces.push_back(std::move(p));
        off += c.size;
        total_ += c.size;
      }
      unchecked_ += file.pieces.size();
      by_name_[file.name] = files_.size();
      files_.push_back(std::move(file));
    }
  }

  ~Impl() { stop(); }

  // Opens the fast copy's files, if it serves one.
  Status open_fast_copy();
  Status start();
  void stop();
  Status finish();
  std::optional<Error> failure() const {
    std::lock_guard<std::mutex> g(mu_);
    return error_;
  }
  int images_dir() const { return dir_.get(); }

  // FUSE's requests.
  void lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void getattr(fuse_req_t req, fuse_ino_t ino);
  void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);
  void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);

 private:
  static constexpr fuse_ino_t kFirstFile = FUSE_ROOT_ID + 1;
  File* file_of(fuse_ino_t ino) {
    return ino >= kFirstFile && ino - kFirstFile < files_.size() ? &files_[ino - kFirstFile] : nullptr;
  }
  void attributes(fuse_ino_t ino, struct stat* st) const;
  bool pick(size_t* file, size_t* piece);
  // A piece's chunk is checked and in data: ready for CRIU, or dropped.
  void settle(Piece& p, std::shared_ptr<char> data);
  void fetch();
  void serve();
  std::shared_ptr<char> buffer(size_t n);
  // Reads piece p of file fi into out and checks it.
  Status read_piece(size_t fi, const Piece& p, char* out) const;
  // "checkpoint ID of job 'NAME': images/FILE (bytes A..B)", for errors.
  std::string describe(size_t fi, const Piece& p) const {
    return fmt::format("checkpoint {} of job '{}': {}{} (bytes {}..{})", id_, job_.name(), kImages, files_[fi].name,
                       p.off, p.off + p.ref->size);
  }
  Error with_hint(Error e) const { return e.hint.empty() ? e.with_hint(damaged_hint(job_)) : e; }

  ChunkStore chunks_;
  JobDir job_;
  std::string id_;
  Manifest m_;  // the pieces point at its chunks
  ProgressFn progress_;
  std::string fast_copy_;            // the fast copy served, or "": the store's chunks
  std::vector<UniqueFd> fast_fds_;   // its files, as files_
  std::vector<File> files_;
  std::map<std::string, size_t> by_name_;
  uint64_t total_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<size_t, size_t>> wanted_;  // pieces a reader waits for
  uint64_t held_ = 0;                             // bytes fetched or being fetched, not yet dropped
  std::set<std::string> reading_;                         // chunks being read, by hash
  std::map<std::string, std::weak_ptr<char>> in_memory_;  // checked chunks by hash, while some piece holds them
  uint64_t reads_ = 0, shared_ = 0;                       // chunks read from the store, and found in memory
  uint64_t checked_bytes_ = 0;
  size_t unchecked_ = 0;
  std::optional<Error> error_;
  bool draining_ = false;  // CRIU has read what it will: check the rest, keep nothing
  bool stopping_ = false;

  std::mutex pool_mu_;
  std::vector<ScratchBuffer> pool_;

  fuse_session* se_ = nullptr;
  UniqueFd mnt_, dir_, stop_;
  std::vector<std::thread> fetchers_, servers_;
};

namespace {

ImageStream::Impl* impl_of(fuse_req_t req) { return static_cast<ImageStream::Impl*>(fuse_req_userdata(req)); }

void op_init(void*, fuse_conn_info* conn) {
  // Requests come in one buffer each, never through a pipe.
  conn->want &= ~FUSE_CAP_SPLICE_READ;
}
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) { impl_of(req)->lookup(req, parent, name); }
void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) { impl_of(req)->getattr(req, ino); }
void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { impl_of(req)->open(req, ino, fi); }
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  impl_of(req)->read(req, ino, size, off);
}
void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_reply_open(req, fi);
}
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  impl_of(req)->readdir(req, ino, size, off);
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.open = op_open;
  ops.read = op_read;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  return ops;
}();

}  // namespace

void ImageStream::Impl::attributes(fuse_ino_t ino, struct stat* st) const {
  *st = {};
  st->st_ino = ino;
  st->st_uid = ::getuid();
  st->st_gid = ::getgid();
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0500;
    st->st_nlink = 2;
    return;
  }
  st->st_mode = S_IFREG | 0400;
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(files_[ino - kFirstFile].size);
  st->st_blksize = 1 << 20;
}

void ImageStream::Impl::lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto it = by_name_.find(name);
  if (parent != FUSE_ROOT_ID || it == by_name_.end()) {
    fuse_reply_err(req, ENOENT);  // CRIU looks for many images a job may not have
    return;
  }
  fuse_entry_param e{};
  e.ino = kFirstFile + it->second;
  e.attr_timeout = e.entry_timeout = 3600;
  attributes(e.ino, &e.attr);
  fuse_reply_entry(req, &e);
}

void ImageStream::Impl::getattr(fuse_req_t req, fuse_ino_t ino) {
  if (ino != FUSE_ROOT_ID && !file_of(ino)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  attributes(ino, &st);
  fuse_reply_attr(req, &st, 3600);
}

void ImageStream::Impl::open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  File* f = file_of(ino);
  if (!f) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  // Page images go past the page cache, straight into the restored memory.
  fi->direct_io = f->pages;
  fi->keep_cache = !f->pages;
  fuse_reply_open(req, fi);
}

void ImageStream::Impl::readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < files_.size(); i++) {
    struct stat st;
    attributes(kFirstFile + i, &st);
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, files_[i].name.c_str(), &st,
                                 static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ImageStream::Impl::read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  File* f = file_of(ino);
  if (!f) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (f->pages) fault_point("stream.read");  // CRIU is restoring memory
  size_t fi = ino - kFirstFile;
  uint64_t begin = static_cast<uint64_t>(off), end = std::min<uint64_t>(begin + size, f->size);
  if (begin >= end) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  auto first = std::upper_bound(f->pieces.begin(), f->pieces.end(), begin,
                                [](uint64_t at, const Piece& p) { return at < p.off; });
  std::vector<std::shared_ptr<char>> held;
  std::vector<iovec> iov;
  std::unique_lock<std::mutex> lk(mu_);
  f->pos = end;
  for (size_t i = static_cast<size_t>(first - f->pieces.begin()) - 1; i < f->pieces.size() && f->pieces[i].off < end;
       i++) {
    Piece& p = f->pieces[i];
    p.waiting++;
    while (p.state != Piece::State::ready && !error_ && !stopping_) {
      if (p.state == Piece::State::idle && !p.wanted) {
        p.wanted = true;
        wanted_.emplace_back(fi, i);
        cv_.notify_all();
      }
      cv_.wait(lk);
    }
    p.waiting--;
    if (p.state != Piece::State::ready) {
      lk.unlock();
      fuse_reply_err(req, EIO);
      return;
    }
    uint64_t a = std::max(begin, p.off), b = std::min(end, p.off + p.ref->size);
    iov.push_back({p.data.get() + (a - p.off), b - a});
    held.push_back(p.data);
    p.served += b - a;
    if (f->pages && p.served >= p.ref->size) {  // read through: its memory goes to the next chunk
      p.data.reset();
      p.state = Piece::State::idle;
      held_ -= p.ref->size;
      cv_.notify_all();
    }
  }
  lk.unlock();
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
}

std::shared_ptr<char> ImageStream::Impl::buffer(size_t n) {
  auto b = std::make_unique<ScratchBuffer>();
  {
    std::lock_guard<std::mutex> g(pool_mu_);
    if (!pool_.empty()) {
      *b = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  char* data = b->get(std::max(n, kBufferSize));
  if (!data) return nullptr;
  // Back to the pool when the last reader lets go: reused memory is warm.
  return std::shared_ptr<char>(data, [this, b = b.release()](char*) {
    std::lock_guard<std::mutex> g(pool_mu_);
    pool_.push_back(std::move(*b));
    delete b;
  });
}

bool ImageStream::Impl::pick(size_t* file, size_t* piece) {
  while (!wanted_.empty()) {
    auto [f, p] = wanted_.front();
    wanted_.pop_front();
    files_[f].pieces[p].wanted = false;
    if (files_[f].pieces[p].state == Piece::State::idle) {
      *file = f;
      *piece = p;
      return true;
    }
  }
  // Ahead of CRIU: the file whose next piece is nearest to where CRIU reads.
  size_t best = files_.size();
  uint64_t lead = UINT64_MAX;
  for (size_t i = 0; i < files_.size(); i++) {
    File& f = files_[i];
    while (f.next < f.pieces.size() && (f.pieces[f.next].checked || f.pieces[f.next].state != Piece::State::idle))
      f.next++;
    if (f.next == f.pieces.size()) continue;
    uint64_t at = f.pieces[f.next].off;
    uint64_t ahead = at > f.pos ? at - f.pos : 0;
    if (ahead < lead) {
      lead = ahead;
      best = i;
    }
  }
  if (best == files_.size()) return false;
  const Piece& p = files_[best].pieces[files_[best].next];
  if (!draining_ && held_ > 0 && held_ + p.ref->size > kWindow) return false;
  *file = best;
  *piece = files_[best].next++;
  return true;
}

void ImageStream::Impl::settle(Piece& p, std::shared_ptr<char> data) {
  if (!p.checked) {
    p.checked = true;
    unchecked_--;
    checked_bytes_ += p.ref->size;
    if (progress_) progress_("restoring", checked_bytes_, total_);
  }
  if (draining_ && p.waiting == 0) {  // only checked: no one will read it
    p.state = Piece::State::idle;
    held_ -= p.ref->size;
  } else {
    p.state = Piece::State::ready;
    p.served = 0;
    p.data = std::move(data);
  }
  cv_.notify_all();
}

Status ImageStream::Impl::open_fast_copy() {
  if (fast_copy_.empty()) return {};
  for (const auto& f : files_) {
    for (const auto& p : f.pieces)
      if (p.ref->xxh3.empty()) return make_error("checkpoint " + id_ + " records no XXH3 of its chunks to check a fast copy by");
    auto fd = open_copy_file(fast_copy_ + "/" + kImages + f.name, f.size);
    if (!fd) return fd.error();
    fast_fds_.push_back(std::move(*fd));
  }
  return {};
}

Status ImageStream::Impl::read_piece(size_t fi, const Piece& p, char* out) const {
  if (fast_copy_.empty()) return chunks_.get(*p.ref, out, describe(fi, p));
  return read_copy_piece(fast_fds_[fi].get(), fast_copy_ + "/" + kImages + files_[fi].name, *p.ref, p.off, out);
}

void ImageStream::Impl::fetch() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    size_t fi = 0, pi = 0;
    cv_.wait(lk, [&] { return stopping_ || error_ || pick(&fi, &pi); });
    if (stopping_ || error_) return;
    Piece& p = files_[fi].pieces[pi];
    held_ += p.ref->size;
    p.state = Piece::State::fetching;
    // The same content elsewhere (a run of zero pages, say), being read or
    // still in memory: read and checked once.
    cv_.wait(lk, [&] { return stopping_ || error_ || !reading_.count(p.ref->hash); });
    if (stopping_ || error_) return;
    if (auto it = in_memory_.find(p.ref->hash); it != in_memory_.end()) {
      if (auto same = it->second.lock()) {
        shared_++;
        settle(p, std::move(same));
        continue;
      }
      in_memory_.erase(it);
    }
    reading_.insert(p.ref->hash);
    lk.unlock();
    std::shared_ptr<char> data = buffer(p.ref->size);
    Status st = data ? read_piece(fi, p, data.get()) : Status(make_error("cannot allocate a buffer for " + describe(fi, p)));
    lk.lock();
    reading_.erase(p.ref->hash);
    if (!st) {
      // A damaged fast copy gives way to the store's (job/restore.cc): no hint.
      if (!error_) error_ = fast_copy_.empty() ? with_hint(st.error()) : st.error();
      p.state = Piece::State::idle;
      held_ -= p.ref->size;
      cv_.notify_all();
      return;
    }
    in_memory_[p.ref->hash] = data;
    reads_++;
    settle(p, std::move(data));
  }
}

void ImageStream::Impl::serve() {
  fuse_buf buf{};
  pollfd fds[2] = {{fuse_session_fd(se_), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  while (!fuse_session_exited(se_)) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    int r = fuse_session_receive_buf(se_, &buf);
    if (r == -EAGAIN || r == -EINTR) continue;  // another thread took it
    if (r <= 0) break;                          // the file system is gone
    fuse_session_process_buf(se_, &buf);
  }
  std::free(buf.mem);
}

namespace {

// The FUSE device, and a FUSE file system context to mount with it.
struct FuseFds {
  UniqueFd dev, fs;
};
Result<FuseFds> open_fuse() {
  if (!tuning().stream)
    return make_error("streaming is turned off on this node (store.stream = false, or CRYO_STREAM=0)");
  FuseFds f;
  auto dev = sys::open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (!dev) return dev.error();
  f.dev = std::move(*dev);
  f.fs.reset(static_cast<int>(::syscall(SYS_fsopen, "fuse", FSOPEN_CLOEXEC)));
  if (!f.fs.valid()) return sys_error("cannot create a FUSE file system");
  return f;
}

}  // namespace

Status ImageStream::Impl::start() {
  auto fds = open_fuse();
  if (!fds) return fds.error();
  UniqueFd& dev = fds->dev;
  UniqueFd& fs = fds->fs;
  auto set = [&](const char* key, const std::string& value) -> Status {
    if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) < 0)
      return sys_error(std::string("cannot set the FUSE file system's ") + key);
    return {};
  };
  CRYO_TRY(set("fd", std::to_string(dev.get())));
  CRYO_TRY(set("rootmode", "40000"));
  CRYO_TRY(set("user_id", std::to_string(::getuid())));
  CRYO_TRY(set("group_id", std::to_string(::getgid())));
  // The restored tasks read their pages themselves, under their own
  // credentials; the mount is reachable only through the fd CRIU gets.
  if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_FLAG, "allow_other", nullptr, 0) < 0)
    return sys_error("cannot set the FUSE file system's allow_other");
  if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0)
    return sys_error("cannot create a FUSE file system");
  mnt_.reset(static_cast<int>(::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC,
                                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)));
  if (!mnt_.valid()) return sys_error("cannot mount a FUSE file system");

  const char* argv[] = {"cryo", nullptr};
  fuse_args args = FUSE_ARGS_INIT(1, const_cast<char**>(argv));
  se_ = fuse_session_new(&args, &kOps, sizeof kOps, this);
  if (!se_) return make_error("cannot start a FUSE session");
  // "/dev/fd/N": the session serves the device already mounted, and owns it.
  if (fuse_session_mount(se_, fmt::format("/dev/fd/{}", dev.get()).c_str()) != 0)
    return make_error("cannot start a FUSE session on /dev/fuse");
  dev.release();
  stop_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!stop_.valid()) return sys_error("cannot create an eventfd");
  for (int i = 0; i < kServers; i++) servers_.emplace_back([this] { serve(); });
  // Each fetcher mostly waits for its chunk to come from the disk.
  for (int i = 0; i < 4 * default_threads(); i++) fetchers_.emplace_back([this] { fetch(); });
  dir_.reset(::openat(mnt_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_.valid()) return sys_error("cannot open the streamed images directory");
  return {};
}

void ImageStream::Impl::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (stop_.valid()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
  }
  for (auto& t : fetchers_) t.join();
  for (auto& t : servers_) t.join();
  fetchers_.clear();
  servers_.clear();
  dir_.reset();
  mnt_.reset();
  // Closes /dev/fuse: whatever still held the file system gets errors.
  if (se_) fuse_session_destroy(se_);
  se_ = nullptr;
  for (auto& f : files_)
    for (auto& p : f.pieces) p.data.reset();
}

Status ImageStream::Impl::finish() {
  std::unique_lock<std::mutex> lk(mu_);
  draining_ = true;
  cv_.notify_all();
  cv_.wait(lk, [&] { return unchecked_ == 0 || error_ || stopping_; });
  if (error_) return *error_;
  if (unchecked_ != 0) return make_error("the image stream stopped before every chunk was checked");
  CRYO_LOG("store", info) << "checkpoint " << id_ << " streamed: " << reads_ << " chunks read from the "
                          << (fast_copy_.empty() ? "store" : "fast copy") << ", " << shared_ << " more found in memory";
  return {};
}

Status ImageStream::available() {
  auto fds = open_fuse();
  if (!fds) return fds.error();
  return {};
}

bool ImageStream::can_stream(const Manifest& m) {
  for (const auto& f : m.files) {
    if (f.path.rfind(kImages, 0) != 0) continue;
    if (!f.chunked || f.path.find('/', std::string(kImages).size()) != std::string::npos) return false;
  }
  return true;
}

Result<std::unique_ptr<ImageStream>> ImageStream::start(const JobDir& job, const std::string& id, const Manifest& m,
                                                        const ProgressFn& progress, const std::string& fast_copy) {
  auto impl = std::make_unique<Impl>(job, id, m, progress, fast_copy);
  CRYO_TRY(impl->open_fast_copy());
  CRYO_TRY(impl->start());
  return std::unique_ptr<ImageStream>(new ImageStream(std::move(impl)));
}

ImageStream::ImageStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ImageStream::~ImageStream() = default;
int ImageStream::images_dir() const { return impl_->images_dir(); }
Status ImageStream::finish() { return impl_->finish(); }
std::optional<Error> ImageStream::failure() const { return impl_->failure(); }

}  // namespace cryo::store
