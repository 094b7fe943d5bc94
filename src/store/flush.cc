#include "store/flush.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <map>
#include <memory>
#include <fmt/format.h>

#include "base/buffer.h"
#include "base/fault.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/parallel.h"
#include "base/identity.h"
#include "base/json.h"
#include "base/sys.h"
#include "store/signing.h"

namespace cryo::store {

namespace {

// Every chunk reference of the job's committed checkpoints.
Result<std::vector<ChunkRef>> referenced_chunks(const JobDir& job) {
  std::vector<ChunkRef> refs;
  auto ids = job.checkpoint_ids();
  if (!ids) return ids.error();
  for (const auto& id : *ids) {
    auto m = job.load_manifest(id);
    // A damaged manifest may still name chunks; keep everything until it is
    // removed by hand, rather than guess.
    if (!m) return m.error().context("cannot tell which chunks are in use");
    for (const auto& f : m->files) refs.insert(refs.end(), f.chunks.begin(), f.chunks.end());
  }
  return refs;
}

// The pack writers of one commit: a thread takes one for each chunk it
// writes, so a flush makes about as many packs as it has threads.
class Writers {
 public:
  Writers(const ChunkStore& store, std::string prefix) : store_(store), prefix_(std::move(prefix)) {}
  Result<ChunkRef> put(const char* data, size_t n, int level) {
    PackWriter* w;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (idle_.empty()) {
        all_.push_back(std::make_unique<PackWriter>(store_, fmt::format("{}-{}", prefix_, all_.size() + 1)));
        idle_.push_back(all_.back().get());
      }
      w = idle_.back();
      idle_.pop_back();
    }
    auto r = w->put(data, n, level);
    std::lock_guard<std::mutex> g(mu_);
    idle_.push_back(w);
    return r;
  }
  // Once every chunk is written: the packs, and their names, are on disk.
  // Only this flush's own files are synced, not the whole file system,
  // which may hold gigabytes of the job's (or anyone's) unwritten output.
  Status sync() {
    for (auto& w : all_) CRYO_TRY(w->sync());
    if (all_.empty()) return {};
    for (const auto& d : {store_.dir() + "/packs", store_.dir(), store_.dir().substr(0, store_.dir().rfind('/'))})
      CRYO_TRY(sys::fsync_path(d));
    return {};
  }

 private:
  const ChunkStore& store_;
  std::string prefix_;
  std::mutex mu_;
  std::vector<std::unique_ptr<PackWriter>> all_;
  std::vector<PackWriter*> idle_;
};

class Flusher {
 public:
  Flusher(const JobDir& job, const FlushOptions& o, std::map<std::string, ChunkRef>& known)
      : job_(job), o_(o), chunks_(job.chunks()), known_(known) {}
  // Cuts dir/rel into chunks and stores those the store lacks, in
  // parallel, taking the hashes of the chunks in `pre` (a DumpFollower's)
  // whose content still matches; fills f.chunks but for where the chunks
  // this flush claimed are (locate() does that once all are written).
  // A chunk whose XXH3-128 and size are those of a chunk the store has or
  // this flush claimed is that chunk: its SHA-256 is not computed again.
  // Returns the bytes it stored.
  Result<uint64_t> store_file(const std::string& dir, int fd, FileSum& f, const FileDigests* pre, Writers& writers,
                              int threads, const std::function<void(uint64_t)>& done);
  Result<Manifest> commit(const Staged& s);
  // Bytes whose SHA-256 this flush computed.
  uint64_t hashed() const { return hashed_; }

 private:
  void report(const std::string& id, uint64_t done, uint64_t total, double since, bool force);
  void locate(std::vector<FileSum>& files) const;
  // The SHA-256 of a chunk known or being hashed with this XXH3-128 and
  // size (waiting for the thread that hashes it), or "": then the caller
  // hashes it and must call hashed() at once.
  std::string seen(const std::string& xxh3, uint32_t size);
  // Adds known_'s chunks to by_xxh3_ (before a commit's threads start).
  void index_known();
  void hashed(const std::string& xxh3, uint32_t size, const std::string& sha256);

  const JobDir& job_;
  const FlushOptions& o_;
  ChunkStore chunks_;
  std::map<std::string, ChunkRef>& known_;  // chunks committed checkpoints hold and the store has, and where
  std::map<std::string, ChunkRef> claimed_;  // chunks written by this flush, not yet committed
  // XXH3-128 -> (size, SHA-256; "" while a thread hashes it) of the
  // chunks in known_ and those this flush hashed: all the job's own
  // memory, so a chunk that matches one is taken for it.  Only the job
  // could make two chunks collide, and only to its own harm; what is read
  // back is still checked against the SHA-256.
  std::map<std::string, std::pair<uint32_t, std::string>> by_xxh3_;
  std::atomic<uint64_t> hashed_{0};
  std::mutex mu_;
  std::condition_variable hashed_cv_;
  double last_report_ = 0;
};

void Flusher::report(const std::string& id, uint64_t done, uint64_t total, double since, bool force) {
  if (o_.progress) o_.progress("flushing", done, total);
  double now = sys::now();
  if (!force && now - last_report_ < 0.5) return;
  last_report_ = now;
  nlohmann::json j = {{"id", id}, {"done", done}, {"total", total}, {"since", since}, {"pid", ::getpid()}};
  (void)sys::write_file_atomic(job_.store_file("flushing.json"), j.dump() + "\n", 0600, false);
}

Result<uint64_t> Flusher::store_file(const std::string& dir, int fd, FileSum& f, const FileDigests* pre,
                                     Writers& writers, int threads, const std::function<void(uint64_t)>& done) {
  std::string what = "'" + dir + "/" + f.path + "'";
  if (pre && pre->end > f.size) pre = nullptr;  // not this file as it is now
  std::vector<uint32_t> lens;
  std::vector<uint64_t> offs;
  uint64_t off = 0;
  if (pre)
    for (const auto& c : pre->chunks) {
      lens.push_back(c.size);
      offs.push_back(off);
      off += c.size;
    }
  auto rest = cut_file(fd, off, f.size, what, threads);
  if (!rest) return rest.error();
  for (auto len : *rest) {
    lens.push_back(len);
    offs.push_back(off);
    off += len;
  }
  size_t followed = pre ? pre->chunks.size() : 0;
  std::atomic<size_t> rehashed{0};
  f.chunks.resize(lens.size());
  int level = o_.level != 0 ? o_.level : default_level();
  std::atomic<uint64_t> stored{0};
  size_t half = lens.size() / 2;
  Status st = parallel_for(lens.size(), threads, [&](size_t i) -> Status {
    uint32_t len = lens[i];
    thread_local ScratchBuffer scratch;
    char* buf = scratch.get(len);
    if (!buf) return make_error("cannot allocate a buffer to read " + what);
    CRYO_TRY(sys::pread_exact(fd, buf, len, offs[i], what));
    std::string x = xxh3_bytes(buf, len);
    std::string h;
    if (i < followed && pre->chunks[i].xxh3 == x) {
      h = pre->chunks[i].sha256;
    } else {
      if (i < followed) rehashed++;
      h = seen(x, len);
      if (h.empty()) {
        h = sha256_bytes(buf, len);
        hashed_ += len;
        hashed(x, len, h);
      }
    }
    bool write;
    {
      std::lock_guard<std::mutex> g(mu_);
      write = !claimed_.count(h) && !known_.count(h);
      if (write) claimed_[h] = {};
    }
    if (write) {
      auto r = writers.put(buf, len, level);
      if (!r) return r.error();
      stored += frame_bytes(*r);
      std::lock_guard<std::mutex> g(mu_);
      claimed_[h] = *r;
    }
    f.chunks[i].hash = h;
    f.chunks[i].size = len;
    f.chunks[i].xxh3 = std::move(x);
    if (i == half) fault_point("flush.chunks");
    std::lock_guard<std::mutex> g(mu_);
    done(len);
    return {};
  });
  if (!st) return st.error();
  if (rehashed) {
    CRYO_LOG("store", warn) << rehashed.load() << " of the chunks hashed during the dump of " << what
                            << " changed since; hashed them again";
  }
  if (followed) {
    CRYO_LOG("store", info) << what << ": " << followed << " of " << lens.size() << " chunks hashed during the dump";
  }
  return stored.load();
}

void Flusher::index_known() {
  for (const auto& [h, r] : known_)
    if (!r.xxh3.empty()) by_xxh3_.emplace(r.xxh3, std::make_pair(r.size, h));
}

std::string Flusher::seen(const std::string& xxh3, uint32_t size) {
  std::unique_lock<std::mutex> lock(mu_);
  auto placed = by_xxh3_.emplace(xxh3, std::make_pair(size, std::string()));
  auto it = placed.first;
  if (placed.second || it->second.first != size) return "";
  hashed_cv_.wait(lock, [&] { return !it->second.second.empty(); });
  return it->second.second;
}

void Flusher::hashed(const std::string& xxh3, uint32_t size, const std::string& sha256) {
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = by_xxh3_.find(xxh3);
    if (it == by_xxh3_.end() || it->second.first != size || !it->second.second.empty()) return;
    it->second.second = sha256;
  }
  hashed_cv_.notify_all();
}

void Flusher::locate(std::vector<FileSum>& files) const {
  for (auto& f : files)
    for (auto& c : f.chunks) {
      auto it = claimed_.find(c.hash);
      const ChunkRef& at = it != claimed_.end() ? it->second : known_.at(c.hash);
      c.pack = at.pack;
      c.offset = at.offset;
      c.stored = at.stored;
    }
}

Result<Manifest> Flusher::commit(const Staged& s) {
  double t0 = sys::now();
  auto base = load_dump_manifest(s);
  if (!base) return base.error();
  Manifest m = *base;
  m.id = s.id;
  m.format = kManifestFormat;
  index_known();
  // The dump is root's (store/staging.h): every file of it is opened here,
  // as root, before anything is written into the owner's store.
  std::optional<AsRoot> root(std::in_place);
  auto rels = sys::files_below(s.dir);
  if (!rels) return rels.error();
  // dump.json and the copy's lock are not part of the checkpoint.
  std::erase_if(*rels, [](const std::string& r) { return r == "dump.json" || r == ".lock"; });
  // A writer waits for its O_DIRECT write about as long as it hashes and
  // compresses: two per core keep the cores busy (bench/NOTES.md).
  int threads = o_.threads > 0 ? o_.threads : 2 * default_threads();

  std::vector<UniqueFd> fds;
  std::vector<FileSum> sums;
  std::vector<const FileDigests*> pres;
  uint64_t total = 0, done = 0, stored = 0;
  for (const auto& r : *rels) {
    std::string path = s.dir + "/" + r;
    auto fd = sys::open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (!fd) return fd.error();
    auto st = sys::fstat(fd->get(), "'" + path + "'");
    if (!st) return st.error();
    if (!S_ISREG(st->st_mode)) return make_error("'" + path + "' is not a regular file; CRIU writes only regular files");
    FileSum f;
    f.path = r;
    f.size = static_cast<uint64_t>(st->st_size);
    f.chunked = r != kDumpLog;
    total += f.size;
    const FileDigests* pre = nullptr;
    if (o_.digests) {
      auto it = o_.digests->find({st->st_dev, st->st_ino});
      if (it != o_.digests->end()) pre = &it->second;
    }
    sums.push_back(f);
    fds.push_back(std::move(*fd));
    pres.push_back(pre);
  }
  root.reset();
  report(s.id, done, total, t0, true);
  Writers writers(chunks_, fmt::format("{}-{}", s.id, ::getpid()));
  for (size_t i = 0; i < sums.size(); i++) {
    if (!sums[i].chunked) continue;
    auto n = store_file(s.dir, fds[i].get(), sums[i], pres[i], writers, threads, [&](uint64_t n) {
      done += n;
      report(s.id, done, total, t0, false);
    });
    if (!n) return n.error();
    stored += *n;
  }
  locate(sums);
  // The first fsync below waits for the disk to take every chunk written.
  double ts = sys::now();

  // The checkpoint's directory keeps CRIU's log whole and readable.
  CRYO_TRY(job_.commit(m, [&](const std::string& tmp) -> Status {
    for (size_t i = 0; i < sums.size(); i++) {
      if (sums[i].chunked) continue;
      auto text = sys::read_all(fds[i].get(), "'" + s.dir + "/" + sums[i].path + "'");
      if (!text) return text.error();
      sums[i].size = text->size();
      sums[i].sha256 = sha256_bytes(text->data(), text->size());
      auto out = sys::open(tmp + "/" + sums[i].path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (!out) return out.error();
      CRYO_TRY(sys::write_all(out->get(), *text, "'" + tmp + "/" + sums[i].path + "'"));
      CRYO_TRY(sys::fsync_fd(out->get(), "'" + tmp + "/" + sums[i].path + "'"));
      stored += text->size();
    }
    fault_point("flush.before_sync");
    CRYO_TRY(writers.sync());
    CRYO_LOG("store", info) << "checkpoint " << s.id << ": " << total << " bytes, " << stored << " stored, "
                            << hashed_ << " hashed (SHA-256) by this pass, chunked in " << ts - t0 << " s, synced in "
                            << sys::now() - ts << " s";
    m.files = std::move(sums);
    m.total_bytes = total;
    m.stored_bytes = stored;
    return {};
  }));
  for (auto& [h, r] : claimed_) known_[h] = std::move(r);
  claimed_.clear();
  report(s.id, total, total, t0, true);
  return m;
}

// Takes the flush lock and repairs "latest": what every flush pass starts
// with.  What the committed checkpoints hold is read only once there is a
// checkpoint to commit (load_known): reading every manifest is the
// costliest part of a pass that has nothing to do, such as the one before
// each restore.
struct Pass {
  UniqueFd lock;
  std::string latest;
  bool loaded = false;
  std::map<std::string, ChunkRef> known;  // by hash: the committed chunks still present
  bool leftovers = false;  // a flush died here: chunks nothing refers to may be left
};

Result<Pass> begin_pass(const JobDir& job, bool wait, bool* busy) {
  Pass pass;
  auto lock = sys::lock_file(job.store_file("flush.lock"), true, wait);
  if (!lock) {
    if (lock.error().code == EWOULDBLOCK && busy) *busy = true;
    return lock.error();
  }
  pass.lock = std::move(*lock);
  // What a flush killed before left: its manifest directory, and a
  // checkpoint committed before "latest" moved to it.
  pass.leftovers = remove_leftovers(job.store_file("checkpoints")) > 0;
  auto latest = job.latest_id();
  if (!latest) return latest.error();
  pass.latest = *latest;
  if (auto ids = job.checkpoint_ids(); ids && !ids->empty() && ids->back() > pass.latest) {
    CRYO_TRY(sys::symlink_atomic("checkpoints/" + ids->back(), job.store_file("latest")));
    pass.latest = ids->back();
  }
  return pass;
}

Status load_known(const JobDir& job, Pass& pass) {
  if (pass.loaded) return {};
  auto known = referenced_chunks(job);
  if (!known) return known.error();
  // Only chunks still present can be shared: one look per pack (or format
  // 3 chunk file), not one per chunk while the flush runs.
  ChunkStore chunks = job.chunks();
  std::map<std::string, bool> present;  // pack, or a format 3 chunk's hash
  for (auto& r : *known) {
    auto [at, fresh] = present.emplace(r.pack.empty() ? r.hash : r.pack, false);
    if (fresh) at->second = chunks.exists(r);
    if (at->second) pass.known.emplace(r.hash, std::move(r));
  }
  pass.loaded = true;
  return {};
}

Result<FlushResult> run_pass(const JobDir& job, const FastTier& tier, const FlushOptions& opts, Pass& pass,
                             Flusher& flusher) {
  FlushResult result;
  auto staged = list_staged(job, tier);
  if (!staged) return staged.error();
  Status failure;
  bool stored = false;  // chunks were written, or may have been by a dead flush
  for (const auto& s : *staged) {
    bool committed = sys::exists(job.checkpoint_dir(s.id) + "/manifest.json");
    if (committed || (!pass.latest.empty() && s.id <= pass.latest)) {
      // A fast copy of a committed checkpoint is kept only for the latest;
      // anything else here is stale.
      if (!(committed && s.fast && s.id == pass.latest)) {
        discard_staged(s);
        stored = true;
      }
      continue;
    }
    stored = true;
    auto m = [&]() -> Result<Manifest> {
      CRYO_TRY(load_known(job, pass));
      return flusher.commit(s);
    }();
    if (!m) {
      Error e = store_error(m.error()).context(fmt::format("checkpoint {} could not be written to the store", s.id));
      if (opts.failed) opts.failed(s.id, e);
      discard_staged(s);
      failure = e;
      break;
    }
    pass.latest = s.id;
    result.committed.push_back(s.id);
    if (!s.fast) discard_staged(s);
    if (opts.committed) opts.committed(*m);
  }
  // Fast copies older than the latest are no use any more.
  if (auto again = list_staged(job, tier))
    for (const auto& s : *again)
      if (s.fast && s.id < pass.latest && sys::exists(job.checkpoint_dir(s.id) + "/manifest.json")) discard_staged(s);
  ::unlink(job.store_file("flushing.json").c_str());
  fault_point("flush.before_retention");
  // Unused chunks can only have appeared if something was written, failed
  // or left by a dead flush: otherwise (most restores, a job's end) no
  // need to list them all.
  bool collect = stored || pass.leftovers;
  auto removed = retain(job, opts.keep, collect);
  if (!failure) return failure.error();
  if (!removed) return removed.error();
  result.removed = *removed;
  result.hashed_bytes = flusher.hashed();
  return result;
}

}  // namespace

int default_level() { return tuning().zstd_level; }

Result<FlushResult> flush(const JobDir& job, const FastTier& tier, const FlushOptions& opts, bool wait) {
  bool busy = false;
  auto pass = begin_pass(job, wait, &busy);
  if (!pass) {
    if (!busy) return pass.error();
    FlushResult r;
    r.busy = true;
    return r;
  }
  Flusher flusher(job, opts, pass->known);
  return run_pass(job, tier, opts, *pass, flusher);
}

Result<std::vector<std::string>> retain(const JobDir& job, int keep, bool collect) {
  auto removed = job.apply_retention(keep);
  if (!removed) return removed.error();
  // A collection a crash cut short is finished by the next pass.
  std::string marker = job.store_file("collecting");
  if (removed->empty() && !collect && !sys::exists(marker)) return removed;
  CRYO_TRY(sys::write_file_atomic(marker, "", 0600, false));
  // Chunks go only after the manifests that named them: a crash in between
  // leaves chunks nothing refers to, which the next pass frees.
  auto refs = referenced_chunks(job);
  if (!refs) return refs.error();
  auto n = job.chunks().collect(*refs);
  if (!n) return n.error();
  if (*n) {
    CRYO_LOG("store", info) << "removed " << *n << " packs or chunk files no checkpoint refers to";
  }
  ::unlink(marker.c_str());
  return *removed;
}

FlushState flush_state(const JobDir& job) {
  FlushState s;
  auto text = sys::read_file(job.store_file("flushing.json"));
  if (!text) return s;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) return s;
  // A report that does not read is no flush in progress.
  try {
    s.pid = json_int(j, "pid", pid_t{0});
    if (!sys::pid_alive(s.pid)) return s;
    s.id = j.value("id", "");
    s.done = json_int(j, "done", uint64_t{0});
    s.total = json_int(j, "total", uint64_t{0});
    s.since = j.value("since", 0.0);
  } catch (const nlohmann::json::exception&) {
    return FlushState{};
  }
  s.running = true;
  return s;
}

Result<UniqueFd> hold_checkpoints(const JobDir& job) { return sys::lock_file(job.store_file("flush.lock"), false, true); }

}  // namespace cryo::store
