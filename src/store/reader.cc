#include "store/reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <fmt/format.h>

#include "base/buffer.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/parallel.h"
#include "base/identity.h"
#include "base/sys.h"
#include "store/flush.h"
#include "store/signing.h"

namespace cryo::store {

std::string damaged_hint(const JobDir& job) {
  return "this checkpoint is damaged and will not be restored; restore an older one with 'cryo restore " +
         job.name() + " --from ID' or take a new checkpoint";
}

namespace {

// Where each distinct chunk of the manifest goes: (file index, offset).
struct ChunkUse {
  ChunkRef ref;
  std::vector<std::pair<size_t, uint64_t>> at;
};

std::vector<ChunkUse> chunk_uses(const Manifest& m) {
  std::map<std::string, size_t> index;
  std::vector<ChunkUse> uses;
  for (size_t i = 0; i < m.files.size(); i++) {
    uint64_t off = 0;
    for (const auto& c : m.files[i].chunks) {
      auto [it, fresh] = index.emplace(c.hash, uses.size());
      if (fresh) uses.push_back({c, {}});
      uses[it->second].at.emplace_back(i, off);
      off += c.size;
    }
  }
  return uses;
}

// Checks the whole files (CRIU's log) of a checkpoint dir.
Status verify_whole_files(const JobDir& job, const std::string& id, const Manifest& m, const std::string& dir,
                          const ProgressFn& progress) {
  uint64_t before = 0;
  for (const auto& f : m.files) {
    if (f.chunked) continue;
    std::string path = dir + "/" + f.path;
    auto st = sys::stat(path);
    if (!st) return make_error(ErrorKind::corrupt, "checkpoint " + id + " of job '" + job.name() + "' is missing " + path).with_hint(damaged_hint(job));
    if (static_cast<uint64_t>(st->st_size) != f.size)
      return make_error(ErrorKind::corrupt, fmt::format("checkpoint {} of job '{}' is damaged: {} has {} bytes, its manifest says {}", id,
                                    job.name(), path, st->st_size, f.size)).with_hint(damaged_hint(job));
    auto sum = sha256_file(path, [&](uint64_t d) {
      if (progress) progress("verifying", before + d, m.total_bytes);
    });
    if (!sum) return sum.error();
    if (*sum != f.sha256)
      return make_error(ErrorKind::corrupt, "checkpoint " + id + " of job '" + job.name() + "' is damaged: the checksum of " + path +
                        " does not match its manifest").with_hint(damaged_hint(job));
    before += f.size;
  }
  return {};
}

// Every file in dir (but manifest.json, and what `ignore` names) must be
// listed, so nothing can be slipped in beside a checkpoint.
Status no_unlisted_files(const JobDir& job, const std::string& id, const Manifest& m, const std::string& dir,
                         const std::vector<std::string>& ignore) {
  auto rels = sys::files_below(dir);
  if (!rels) return rels.error();
  for (const auto& r : *rels) {
    if (r == "manifest.json" || std::find(ignore.begin(), ignore.end(), r) != ignore.end()) continue;
    bool listed = std::any_of(m.files.begin(), m.files.end(), [&](const FileSum& f) { return f.path == r; });
    if (!listed)
      return make_error("checkpoint " + id + " of job '" + job.name() + "' has a file its manifest does not list: " + dir +
                        "/" + r).with_hint(damaged_hint(job));
  }
  return {};
}

}  // namespace

Result<UniqueFd> open_copy_file(const std::string& path, uint64_t size) {
  auto fd = sys::open(path, O_RDONLY);
  if (!fd) return make_error("the fast copy lacks " + path);
  auto st = sys::fstat(fd->get(), path);
  if (!st || static_cast<uint64_t>(st->st_size) != size) return make_error("the fast copy's " + path + " has the wrong size");
  return fd;
}

Status read_copy_piece(int fd, const std::string& path, const ChunkRef& ref, uint64_t off, char* out) {
  CRYO_TRY(sys::pread_exact(fd, out, ref.size, off, "'" + path + "'"));
  if (xxh3_bytes(out, ref.size) != ref.xxh3)
    return make_error(ErrorKind::corrupt, fmt::format("the fast copy's {} is damaged at bytes {}..{}", path, off, off + ref.size));
  return {};
}

namespace {

enum class CopyPart { all, all_but_pages, pages };

// Checks a fast copy's raw files (or a part of them) against the
// manifest's chunks, by their XXH3: the copy is on this node, in a
// directory only root may enter, so what could change it is damage, not a
// forger; the signed manifest says what the bytes must be.
Status verify_copy(const JobDir& job, const std::string& id, const Manifest& m, const std::string& dir,
                   const ProgressFn& progress, CopyPart part = CopyPart::all, int threads = 0) {
  if (part != CopyPart::pages) CRYO_TRY(no_unlisted_files(job, id, m, dir, {"dump.json", ".lock", kDumpLog}));
  struct Task {
    size_t file;
    uint64_t off;
    const ChunkRef* ref;
  };
  std::vector<Task> tasks;
  std::vector<UniqueFd> fds(m.files.size());
  for (size_t i = 0; i < m.files.size(); i++) {
    const auto& f = m.files[i];
    if (!f.chunked) continue;
    auto fd = open_copy_file(dir + "/" + f.path, f.size);
    if (!fd) return fd.error();
    if ((part == CopyPart::pages && !is_page_image(f.path)) || (part == CopyPart::all_but_pages && is_page_image(f.path)))
      continue;  // its bytes are checked in the other part
    fds[i] = std::move(*fd);
    uint64_t off = 0;
    for (const auto& c : f.chunks) {
      tasks.push_back({i, off, &c});
      off += c.size;
    }
  }
  std::atomic<uint64_t> done{0};
  std::mutex mu;
  return parallel_for(tasks.size(), threads, [&](size_t i) -> Status {
    const Task& t = tasks[i];
    thread_local ScratchBuffer scratch;
    std::string path = dir + "/" + m.files[t.file].path;
    char* buf = scratch.get(t.ref->size);
    if (!buf) return make_error("cannot allocate a buffer to check " + path);
    CRYO_TRY(read_copy_piece(fds[t.file].get(), path, *t.ref, t.off, buf));
    uint64_t d = done += t.ref->size;
    if (progress) {
      std::lock_guard<std::mutex> g(mu);
      progress("verifying", d, m.total_bytes);
    }
    return {};
  });
}

// Reads every distinct chunk once, checks it, and (with out_fds) writes it
// wherever the files use it.
Status read_chunks(const JobDir& job, const std::string& id, const Manifest& m, std::vector<UniqueFd>* out_fds,
                   const std::vector<std::string>* out_paths, const std::string& phase, const ProgressFn& progress,
                   int threads) {
  std::vector<ChunkUse> uses = chunk_uses(m);
  ChunkStore chunks = job.chunks();
  // Each worker mostly waits for its chunk to come from the disk: more
  // reads in flight than cores (bench/NOTES.md).
  if (threads <= 0) threads = 4 * default_threads();
  std::atomic<uint64_t> done{0};
  std::mutex mu;
  Status st = parallel_for(uses.size(), threads, [&](size_t i) -> Status {
    const ChunkUse& u = uses[i];
    thread_local ScratchBuffer scratch;
    char* buf = scratch.get(u.ref.size);
    if (!buf) return make_error("cannot allocate a buffer to read chunks");
    const FileSum& first = m.files[u.at[0].first];
    std::string what = fmt::format("checkpoint {} of job '{}': {} (bytes {}..{})", id, job.name(), first.path,
                                   u.at[0].second, u.at[0].second + u.ref.size);
    CRYO_TRY(chunks.get(u.ref, buf, what));
    uint64_t d = 0;
    for (const auto& [file, off] : u.at) {
      if (out_fds) CRYO_TRY(sys::pwrite_all((*out_fds)[file].get(), buf, u.ref.size, off, "'" + (*out_paths)[file] + "'"));
      d = done += u.ref.size;
    }
    if (progress) {
      std::lock_guard<std::mutex> g(mu);
      progress(phase, d, m.total_bytes);
    }
    return {};
  });
  if (!st) {
    Error e = st.error();
    if (e.hint.empty() && kind_of(e) == ErrorKind::corrupt) e.hint = damaged_hint(job);
    return e;
  }
  return {};
}

}  // namespace

Status verify(const JobDir& job, const std::string& id, const ProgressFn& progress, int threads) {
  auto m = load_signed_manifest(job, id);
  if (!m) return m.error();
  std::string dir = job.checkpoint_dir(id);
  CRYO_TRY(no_unlisted_files(job, id, *m, dir, {}));
  CRYO_TRY(verify_whole_files(job, id, *m, dir, progress));
  return read_chunks(job, id, *m, nullptr, nullptr, "verifying", progress, threads);
}

Result<Materialized> materialize(const JobDir& job, const FastTier& tier, const std::string& id,
                                 const Manifest& m, bool prefer_fast, const ProgressFn& progress,
                                 bool defer_pages) {
  // The copies it reads in the fast tier, and those it lays out, are root's
  // (store/staging.h); the store's chunks are checked against the signed
  // manifest whoever reads them.
  AsRoot root;
  Materialized out;
  if (prefer_fast) {
    auto staged = list_staged(job, tier);
    if (staged)
      for (const auto& s : *staged) {
        if (!s.fast || s.id != id) continue;
        auto hold = hold_copy(s, true);
        if (!hold) break;
        if (defer_pages && ImageStream::can_stream(m)) {
          // Served to CRIU, every piece checked as it goes (bench/NOTES.md).
          auto stream = ImageStream::start(job, id, m, progress, s.dir);
          if (stream) {
            out.dir = s.dir;
            out.source = "fast copy";
            out.stream = std::move(*stream);
            out.hold = std::move(*hold);
            return out;
          }
          CRYO_LOG("store", info) << "cannot stream the fast copy of checkpoint " << id << " ("
                                  << stream.error().message << "); CRIU reads it in place";
        }
        if (auto st = verify_copy(job, id, m, s.dir, progress, defer_pages ? CopyPart::all_but_pages : CopyPart::all);
            !st) {
          out.warning = st.error().message;
          break;
        }
        if (defer_pages)
          // While CRIU, which restores on one core, reads the same pages:
          // XXH3 keeps pace on the others (bench/NOTES.md).
          out.check_pages = [&job, id, m, dir = s.dir] {
            return verify_copy(job, id, m, dir, {}, CopyPart::pages, std::max(1, default_threads() - 1));
          };
        out.dir = s.dir;
        out.source = "fast copy";
        out.hold = std::move(*hold);
        return out;
      }
  }
  // Reassemble from the store.
  auto hold = [&] {
    AsOwner owner;  // a lock file in the owner's store
    return hold_checkpoints(job);
  }();
  if (!hold) return hold.error();
  out.source = "store";
  if (defer_pages && ImageStream::can_stream(m)) {
    auto stream = ImageStream::start(job, id, m, progress);
    if (stream) {
      out.stream = std::move(*stream);
      out.hold = std::move(*hold);
      return out;
    }
    CRYO_LOG("store", info) << "cannot stream checkpoint " << id << " (" << stream.error().message
                            << "); laying out its files first";
  }
  std::string parent = job.store_file("staging");
  std::string fast = fast_dir(tier, job);
  if (!fast.empty()) {
    auto space = sys::fs_space(tier.root);
    uint64_t need = m.total_bytes + (64 << 20);
    bool room = space && space->available > need && sys::tree_size(tier.root) + need <= tier.limit &&
                (!space->tmpfs || sys::mem_available() > need + std::max<uint64_t>(1ull << 30, sys::mem_total() / 20));
    if (room) parent = fast;
  }
  CRYO_TRY(sys::mkdir_p(parent, 0700));
  out.dir = temp_path(parent, "restore-" + id);
  out.temporary = true;
  out.hold = std::move(*hold);
  (void)sys::remove_tree(out.dir);
  std::vector<UniqueFd> fds(m.files.size());
  std::vector<std::string> paths(m.files.size());
  auto fail = [&](const Error& e) {
    (void)sys::remove_tree(out.dir);
    return e;
  };
  for (size_t i = 0; i < m.files.size(); i++) {
    const auto& f = m.files[i];
    if (!f.chunked) continue;
    paths[i] = out.dir + "/" + f.path;
    if (auto st = sys::mkdir_p(paths[i].substr(0, paths[i].rfind('/')), 0700); !st) return fail(st.error());
    auto fd = sys::open(paths[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!fd) return fail(fd.error());
    fds[i] = std::move(*fd);
  }
  if (auto st = read_chunks(job, id, m, &fds, &paths, "reading", progress, 0); !st) return fail(st.error());
  // The files grow as the chunks are written, about in order, and are
  // sized only now: sized first, laying them out into a tmpfs with huge
  // pages took about three times as long (bench/NOTES.md).
  for (size_t i = 0; i < m.files.size(); i++)
    if (fds[i].valid() && ::ftruncate(fds[i].get(), static_cast<off_t>(m.files[i].size)) < 0)
      return fail(sys_error("cannot size '" + paths[i] + "'"));
  return out;
}

void release(Materialized& m) {
  AsRoot root;
  m.stream.reset();
  if (m.temporary && !m.dir.empty()) (void)sys::remove_tree(m.dir);
  m.hold.reset();
}

}  // namespace cryo::store
