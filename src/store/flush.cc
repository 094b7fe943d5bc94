#include "store/flush.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <set>
#include <fmt/format.h>

#include "base/fault.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/parallel.h"
#include "base/sys.h"

namespace cryo::store {

namespace {

// Regular files below dir, relative to it, sorted; dump.json and the copy's
// lock are not part of the checkpoint.
Result<std::vector<std::string>> checkpoint_files(const std::string& dir) {
  std::vector<std::string> out;
  std::vector<std::string> todo{""};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    auto names = sys::list_dir(rel.empty() ? dir : dir + "/" + rel);
    if (!names) return names.error();
    for (const auto& n : *names) {
      std::string r = rel.empty() ? n : rel + "/" + n;
      if (r == "dump.json" || r == ".lock") continue;
      auto st = sys::lstat(dir + "/" + r);
      if (!st) return st.error();
      if (S_ISDIR(st->st_mode))
        todo.push_back(r);
      else if (S_ISREG(st->st_mode))
        out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Chunks that the job's committed checkpoints refer to.
Result<std::set<std::string>> referenced_chunks(const JobDir& job) {
  std::set<std::string> refs;
  auto ids = job.checkpoint_ids();
  if (!ids) return ids.error();
  for (const auto& id : *ids) {
    auto m = job.load_manifest(id);
    // A damaged manifest may still name chunks; keep everything until it is
    // removed by hand, rather than guess.
    if (!m) return m.error().context("cannot tell which chunks are in use");
    for (const auto& f : m->files)
      for (const auto& c : f.chunks) refs.insert(c.hash);
  }
  return refs;
}

Error store_error(const Error& e) {
  Error out = e;
  if (e.code == ENOSPC) out.hint = "the store's disk is full: free space there, or choose another --store";
  if (e.code == EROFS) out.hint = "the store is on a read-only file system: choose a writable one with --store";
  if (e.code == EDQUOT) out.hint = "your disk quota on the store is used up";
  return out;
}

class Flusher {
 public:
  Flusher(const JobDir& job, const FlushOptions& o) : job_(job), o_(o), chunks_(job.chunks()) {}
  Result<Manifest> commit(const Staged& s, std::set<std::string>& known);

 private:
  void report(const std::string& id, uint64_t done, uint64_t total, double since, bool force);

  const JobDir& job_;
  const FlushOptions& o_;
  ChunkStore chunks_;
  double last_report_ = 0;
};

void Flusher::report(const std::string& id, uint64_t done, uint64_t total, double since, bool force) {
  if (o_.progress) o_.progress("flushing", done, total);
  double now = sys::now();
  if (!force && now - last_report_ < 0.5) return;
  last_report_ = now;
  nlohmann::json j = {{"id", id}, {"done", done}, {"total", total}, {"since", since}, {"pid", ::getpid()}};
  (void)sys::write_file_atomic(job_.file("flushing.json"), j.dump() + "\n", 0600, false);
}

Result<Manifest> Flusher::commit(const Staged& s, std::set<std::string>& known) {
  double t0 = sys::now();
  auto base = load_dump_manifest(s);
  if (!base) return base.error();
  Manifest m = *base;
  m.id = s.id;
  m.format = kManifestFormat;
  auto rels = checkpoint_files(s.dir);
  if (!rels) return rels.error();

  // What to store: every chunk of every file but CRIU's log.
  struct Task {
    size_t file;
    uint64_t off;
    uint32_t len;
    size_t index;  // within its file
  };
  std::vector<Task> tasks;
  std::vector<UniqueFd> fds;
  std::vector<FileSum> sums;
  uint64_t total = 0;
  int threads = o_.threads > 0 ? o_.threads : default_threads();
  for (const auto& r : *rels) {
    FileSum f;
    f.path = r;
    std::string path = s.dir + "/" + r;
    auto fd = sys::open(path, O_RDONLY);
    if (!fd) return fd.error();
    auto st = sys::fstat(fd->get(), "'" + path + "'");
    if (!st) return st.error();
    f.size = static_cast<uint64_t>(st->st_size);
    total += f.size;
    if (r != "criu-dump.log") {
      f.chunked = true;
      auto lens = cut_file(fd->get(), f.size, "'" + path + "'", threads);
      if (!lens) return lens.error();
      uint64_t off = 0;
      for (size_t i = 0; i < lens->size(); i++) {
        tasks.push_back({sums.size(), off, (*lens)[i], i});
        off += (*lens)[i];
      }
      f.chunks.resize(lens->size());
    }
    sums.push_back(f);
    fds.push_back(std::move(*fd));
  }

  report(s.id, 0, total, t0, true);
  std::mutex mu;
  std::set<std::string> claimed;  // chunks this commit writes
  std::atomic<uint64_t> done{0}, stored{0};
  int level = o_.level != 0 ? o_.level : default_level();
  size_t half = tasks.size() / 2;
  Status st = parallel_for(tasks.size(), threads, [&](size_t i) -> Status {
    const Task& t = tasks[i];
    thread_local std::vector<char> buf;
    buf.resize(t.len);
    CRYO_TRY(sys::pread_exact(fds[t.file].get(), buf.data(), t.len, t.off, "'" + s.dir + "/" + sums[t.file].path + "'"));
    std::string h = hash_bytes(buf.data(), t.len);
    bool write;
    {
      std::lock_guard<std::mutex> g(mu);
      write = !claimed.count(h) && !(known.count(h) && chunks_.exists(h));
      if (write) claimed.insert(h);
    }
    if (write) {
      auto n = chunks_.put(h, buf.data(), t.len, level);
      if (!n) return n.error();
      stored += *n;
    }
    sums[t.file].chunks[t.index] = {h, t.len};
    uint64_t d = done += t.len;
    if (i == half) fault_point("flush.chunks");
    {
      std::lock_guard<std::mutex> g(mu);
      report(s.id, d, total, t0, false);
    }
    return {};
  });
  if (!st) return st.error();

  // The manifest's directory, with CRIU's log kept whole and readable.
  std::string tmp = fmt::format("{}/.tmp-{}-{}", job_.file("checkpoints"), s.id, ::getpid());
  (void)sys::remove_tree(tmp);
  if (::mkdir(tmp.c_str(), 0700) < 0) return sys_error("cannot create '" + tmp + "'");
  struct Cleanup {
    std::string dir;
    bool armed = true;
    ~Cleanup() {
      if (armed) (void)sys::remove_tree(dir);
    }
  } cleanup{tmp};
  for (size_t i = 0; i < sums.size(); i++) {
    if (sums[i].chunked) continue;
    auto text = sys::read_all(fds[i].get(), "'" + s.dir + "/" + sums[i].path + "'");
    if (!text) return text.error();
    sums[i].size = text->size();
    sums[i].xxh3 = hash_bytes(text->data(), text->size());
    auto out = sys::open(tmp + "/" + sums[i].path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!out) return out.error();
    CRYO_TRY(sys::write_all(out->get(), *text, "'" + tmp + "/" + sums[i].path + "'"));
    stored += text->size();
  }
  fault_point("flush.before_sync");
  {
    auto d = sys::open_dir(job_.path());
    if (!d) return d.error();
    double ts = sys::now();
    CRYO_TRY(sys::syncfs(d->get(), "the store"));
    CRYO_LOG("store", info) << "checkpoint " << s.id << ": " << total << " bytes, " << stored.load()
                            << " stored, chunked in " << ts - t0 << " s, synced in " << sys::now() - ts << " s";
  }
  m.files = std::move(sums);
  m.total_bytes = total;
  m.stored_bytes = stored;
  m.durable_seconds = sys::now() - m.created;
  fault_point("store.before_manifest");
  CRYO_TRY(sys::write_file_atomic(tmp + "/manifest.json", to_json(m).dump(1) + "\n", 0600));
  fault_point("store.before_rename");
  CRYO_TRY(sys::rename(tmp, job_.checkpoint_dir(s.id)));
  cleanup.armed = false;
  CRYO_TRY(sys::fsync_path(job_.file("checkpoints")));
  fault_point("store.before_latest");
  CRYO_TRY(sys::symlink_atomic("checkpoints/" + s.id, job_.file("latest")));
  known.insert(claimed.begin(), claimed.end());
  report(s.id, total, total, t0, true);
  return m;
}

}  // namespace

int default_level() {
  if (const char* e = std::getenv("CRYO_ZSTD_LEVEL"); e && *e) {
    int l = std::atoi(e);
    if (l != 0) return l;
  }
  return 1;
}

Result<FlushResult> flush(const JobDir& job, const FastTier& tier, const FlushOptions& opts, bool wait) {
  FlushResult result;
  auto lock = sys::lock_file(job.file("flush.lock"), true, wait);
  if (!lock) {
    if (lock.error().code == EWOULDBLOCK) {
      result.busy = true;
      return result;
    }
    return lock.error();
  }
  // What a flush killed before left: its manifest directory, and a
  // checkpoint committed before "latest" moved to it.
  remove_leftovers(job.file("checkpoints"));
  auto latest = job.latest_id();
  if (!latest) return latest.error();
  if (auto ids = job.checkpoint_ids(); ids && !ids->empty() && ids->back() > *latest) {
    CRYO_TRY(sys::symlink_atomic("checkpoints/" + ids->back(), job.file("latest")));
    *latest = ids->back();
  }
  auto staged = list_staged(job, tier);
  if (!staged) return staged.error();
  auto known = referenced_chunks(job);
  if (!known) return known.error();
  Flusher flusher(job, opts);
  Status failure;
  for (const auto& s : *staged) {
    bool committed = sys::exists(job.checkpoint_dir(s.id) + "/manifest.json");
    if (committed || (!latest->empty() && s.id <= *latest)) {
      // A fast copy of a committed checkpoint is kept only for the latest;
      // anything else here is stale.
      if (!(committed && s.fast && s.id == *latest)) discard_staged(s);
      continue;
    }
    auto m = flusher.commit(s, *known);
    if (!m) {
      Error e = store_error(m.error()).context(fmt::format("checkpoint {} could not be written to the store", s.id));
      if (opts.failed) opts.failed(s.id, e);
      discard_staged(s);
      failure = e;
      break;
    }
    *latest = s.id;
    result.committed.push_back(s.id);
    if (!s.fast) discard_staged(s);
    if (opts.committed) opts.committed(*m);
  }
  // Fast copies older than the latest are no use any more.
  if (auto again = list_staged(job, tier))
    for (const auto& s : *again)
      if (s.fast && s.id < *latest && sys::exists(job.checkpoint_dir(s.id) + "/manifest.json")) discard_staged(s);
  ::unlink(job.file("flushing.json").c_str());
  fault_point("flush.before_retention");
  auto removed = retain(job, opts.keep);
  if (!failure) return failure.error();
  if (!removed) return removed.error();
  result.removed = *removed;
  return result;
}

Result<std::vector<std::string>> retain(const JobDir& job, int keep) {
  auto removed = job.apply_retention(keep);
  if (!removed) return removed.error();
  // Chunks go only after the manifests that named them: a crash in between
  // leaves chunks nothing refers to, which the next pass removes.
  auto refs = referenced_chunks(job);
  if (!refs) return refs.error();
  ChunkStore chunks = job.chunks();
  chunks.remove_temporaries();
  auto present = chunks.list();
  if (!present) return present.error();
  size_t n = 0;
  for (const auto& h : *present) {
    if (refs->count(h)) continue;
    CRYO_TRY(chunks.remove(h));
    if (++n == 2) fault_point("flush.gc");
  }
  if (n) {
    CRYO_LOG("store", info) << "removed " << n << " chunks no checkpoint refers to";
  }
  return *removed;
}

FlushState flush_state(const JobDir& job) {
  FlushState s;
  auto text = sys::read_file(job.file("flushing.json"));
  if (!text) return s;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) return s;
  s.pid = j.value("pid", 0);
  if (!sys::pid_alive(s.pid)) return s;
  s.running = true;
  s.id = j.value("id", "");
  s.done = j.value("done", uint64_t{0});
  s.total = j.value("total", uint64_t{0});
  s.since = j.value("since", 0.0);
  return s;
}

Result<UniqueFd> hold_checkpoints(const JobDir& job) { return sys::lock_file(job.file("flush.lock"), false, true); }

}  // namespace cryo::store
