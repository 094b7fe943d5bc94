// The store: dumps staged in a tier, flushed into content-addressed chunks,
// committed, read back, retained; and a crash at each step of the flush.
// The seam for crashes is the process: a forked child flushes with
// its fault points set (set_fault_points) and is killed at the named point; the parent checks what
// is left and that the next flush carries on.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <cstring>

#include <gtest/gtest.h>

#include "param_name.h"

#include "base/fault.h"
#include "base/fd.h"
#include "base/hash.h"
#include "base/sys.h"
#include "store/chunks.h"
#include "store/flush.h"
#include "store/follow.h"
#include "store/reader.h"
#include "store/signing.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::store {
namespace {

namespace fs = std::filesystem;
using Files = std::map<std::string, std::string>;  // path in the checkpoint -> content

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = g();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A fresh directory under /tmp, removed with everything in it when the
// test ends, passed or not.
class TempDir {
 public:
  explicit TempDir(const char* prefix) {
    std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) fs::remove_all(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    root_ = tmp_.path();
    tier_.root = root_ + "/fast";
    tier_.limit = 1ull << 30;
    fs::create_directories(tier_.root);
    job_ = std::make_unique<JobDir>(root_ + "/store", "j");
    ASSERT_TRUE(job_->create().ok());
    // This test's own signing key, made at the first flush.
    set_key(root_ + "/key");
  }
  void TearDown() override {
    configure(Tuning{});
    set_fault_points("");
  }
  static void set_key(const std::string& path) {
    Tuning t;
    t.key_path = path;
    configure(t);
  }

  // Dumps `files` into a tier, as CRIU and the checkpoint worker would.
  Staged stage(const Files& files, const FastTier& tier) {
    auto p = begin_dump(*job_, tier, 0);
    EXPECT_TRUE(p.ok()) << p.error().message;
    for (const auto& [path, content] : files) {
      fs::create_directories(fs::path(p->dir + "/" + path).parent_path());
      std::ofstream(p->dir + "/" + path, std::ios::binary) << content;
    }
    std::ofstream(p->dir + "/criu-dump.log") << "CRIU's log\n";
    Manifest m;
    m.job = job_->name();
    m.created = sys::now();
    auto s = end_dump(*p, m);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return *s;
  }
  // The job's one staged dump (after add: its fast copy), or an empty one.
  Staged only_staged() {
    auto staged = list_staged(*job_, tier_);
    EXPECT_TRUE(staged.ok());
    if (!staged) return {};
    EXPECT_EQ(staged->size(), 1u);
    return staged->size() == 1 ? staged->at(0) : Staged{};
  }
  // Stages and flushes; returns the committed manifest.
  Manifest add(const Files& files, int keep = 0) {
    Staged s = stage(files, tier_);
    FlushOptions o;
    o.keep = keep;
    auto r = flush(*job_, tier_, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    auto m = job_->load_manifest(s.id);
    EXPECT_TRUE(m.ok());
    return *m;
  }
  std::string restored(const std::string& id, bool prefer_fast, std::string* source = nullptr) {
    auto manifest = job_->load_manifest(id);
    EXPECT_TRUE(manifest.ok());
    if (!manifest) return "";
    auto m = materialize(*job_, tier_, id, *manifest, prefer_fast);
    EXPECT_TRUE(m.ok()) << m.error().message;
    if (!m) return "";
    if (source) *source = m->source;
    std::string s = read_all(m->dir + "/images/pages-1.img");
    release(*m);
    return s;
  }

  // The packs in the store, and those the checkpoints `ids` refer to.
  std::set<std::string> packs_present() {
    std::set<std::string> out;
    if (fs::exists(job_->chunks().dir() + "/packs"))
      for (const auto& e : fs::directory_iterator(job_->chunks().dir() + "/packs")) out.insert(e.path().filename());
    return out;
  }
  std::set<std::string> packs_used(const std::vector<std::string>& ids, uint64_t* live_bytes = nullptr) {
    std::set<std::string> out;
    std::set<std::pair<std::string, uint64_t>> frames;
    for (const auto& id : ids) {
      auto m = job_->load_manifest(id);
      EXPECT_TRUE(m.ok());
      if (!m) continue;
      for (const auto& f : m->files)
        for (const auto& c : f.chunks) {
          out.insert(c.pack);
          if (live_bytes && frames.emplace(c.pack, c.offset).second) *live_bytes += frame_bytes(c);
        }
    }
    return out;
  }
  // Overwrites part of a file in place.
  static void patch(const std::string& path, uint64_t off, const std::string& bytes) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(off));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  TempDir tmp_{"cryo-store-test"};
  std::string root_;
  FastTier tier_;
  std::unique_ptr<JobDir> job_;
};

TEST(Chunking, CuttingAFileInWindowsCutsAsInOnePiece) {
  std::string data = random_bytes((5 << 20) + 1234, 41);
  char tmpl[] = "/tmp/cryo-cut-test-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::unlink(tmpl);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  for (uint64_t from : {uint64_t{0}, uint64_t{8192}}) {
    auto lens = cut_file(fd, from, data.size(), "test", 3);
    ASSERT_TRUE(lens.ok()) << lens.error().message;
    EXPECT_EQ(*lens, cut(data.data() + from, data.size() - from)) << "from " << from;
  }
  ::close(fd);
}

// A pack writer gathers frames and writes them out in large pieces: every
// frame, whether it filled the buffer or came after a write-out, reads
// back as it was once synced.  (Going past kPackLimit into a new pack is
// the next test.)
TEST(PackWriterTest, GatheredFramesReadBackAfterSync) {
  TempDir tmp("cryo-pack-test");
  ASSERT_FALSE(tmp.path().empty());
  ChunkStore store(tmp.path() + "/chunks");
  PackWriter w(store, "t");
  std::vector<std::pair<ChunkRef, std::string>> put;
  size_t sizes[] = {4 << 20, 700 << 10, 3 << 20, 128 << 10, 4 << 20, 1 << 20, 4 << 20, 5000, 2 << 20};
  uint64_t seed = 7;
  for (size_t n : sizes) {
    std::string data = random_bytes(n, seed++);
    auto r = w.put(data.data(), data.size(), -1);
    ASSERT_TRUE(r.ok()) << r.error().message;
    r->hash = sha256_bytes(data.data(), data.size());
    r->size = static_cast<uint32_t>(n);
    put.emplace_back(*r, std::move(data));
  }
  ASSERT_TRUE(w.sync().ok());
  for (const auto& [ref, data] : put) {
    std::string back(data.size(), '\0');
    auto st = store.get(ref, back.data(), "test");
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_EQ(back, data) << "frame at " << ref.offset;
  }
}

// Past kPackLimit a writer writes out what it gathered for the pack it
// filled and goes on in a new one; both are synced, and every frame reads
// back from the pack its reference names.  Frames of 4 MiB, each made
// different by its number in its first bytes: about 260 MiB written.
TEST(PackWriterTest, FramesPastThePackLimitGoToANewPack) {
  TempDir tmp("cryo-pack-test");
  ASSERT_FALSE(tmp.path().empty());
  ChunkStore store(tmp.path() + "/chunks");
  PackWriter w(store, "t");
  const size_t n = 4 << 20;
  std::string base = random_bytes(n, 3);  // incompressible, so each frame takes 4 MiB
  std::vector<ChunkRef> refs;
  for (uint64_t i = 0; refs.empty() || refs.back().pack == refs.front().pack; i++) {
    ASSERT_LT(i, 2 * ChunkStore::kPackLimit / n) << "no new pack";
    std::memcpy(base.data(), &i, sizeof i);
    auto r = w.put(base.data(), n, -1);
    ASSERT_TRUE(r.ok()) << r.error().message;
    r->hash = sha256_bytes(base.data(), n);
    r->size = static_cast<uint32_t>(n);
    refs.push_back(*r);
  }
  ASSERT_TRUE(w.sync().ok());
  size_t in_first = 0;
  for (const auto& r : refs) in_first += r.pack == refs.front().pack;
  EXPECT_EQ(in_first, refs.size() - 1) << "only the last frame goes to the new pack";
  EXPECT_GE(fs::file_size(store.pack_path(refs.front().pack)), ChunkStore::kPackLimit);
  std::string back(n, '\0');
  for (uint64_t i = 0; i < refs.size(); i++) {
    std::memcpy(base.data(), &i, sizeof i);
    auto st = store.get(refs[i], back.data(), "test");
    ASSERT_TRUE(st.ok()) << "frame " << i << ": " << st.error().message;
    EXPECT_TRUE(back == base) << "frame " << i << " in " << refs[i].pack;
  }
}

TEST(Chunking, CutsResyncAfterAnInsertedPage) {
  std::string a = random_bytes(16 << 20, 1);
  std::string b = a.substr(0, 3 << 20) + random_bytes(4096, 2) + a.substr(3 << 20);
  auto ca = cut(a.data(), a.size()), cb = cut(b.data(), b.size());
  // The chunks after the insertion are the same chunks, shifted.
  std::set<std::string> ha, hb;
  for (size_t i = 0, off = 0; i < ca.size(); off += ca[i++]) ha.insert(a.substr(off, ca[i]));
  size_t shared = 0;
  for (size_t i = 0, off = 0; i < cb.size(); off += cb[i++]) shared += ha.count(b.substr(off, cb[i])) * cb[i];
  EXPECT_GT(shared, b.size() * 8 / 10);
  for (auto len : ca) EXPECT_LE(len, Chunking{}.max);
}

// A page image written a piece at a time, as CRIU writes it: the follower
// hashes every chunk completed, exactly as the flush would cut and hash it.
TEST(DumpFollower, HashesTheChunksOfAGrowingPageImageAsTheFlushWould) {
  TempDir tmp("cryo-follow-test");
  ASSERT_FALSE(tmp.path().empty());
  const std::string& dir = tmp.path();
  std::string data = random_bytes(12 << 20, 11);
  auto lens = cut(data.data(), data.size());
  ASSERT_GE(lens.size(), 3u);
  uint64_t before_last = data.size() - lens.back();
  Digests d;
  {
    DumpFollower follower(dir);
    std::ofstream(dir + "/core-1.img") << "not a page image";
    std::ofstream out(dir + "/pages-1.img", std::ios::binary);
    // Pieces that end inside pages: only whole pages may be read.
    for (size_t off = 0; off < data.size(); off += 100000) {
      out.write(data.data() + off, static_cast<std::streamsize>(std::min<size_t>(100000, data.size() - off)));
      out.flush();
      ::usleep(500);
    }
    // It runs at idle priority: give it time on a busy machine.
    for (int i = 0; i < 3000 && follower.hashed() < before_last; i++) ::usleep(10000);
    d = follower.finish();
  }
  struct stat st;
  ASSERT_EQ(::stat((dir + "/pages-1.img").c_str(), &st), 0);
  ASSERT_EQ(d.size(), 1u);  // core-1.img is not followed
  const FileDigests& f = d.begin()->second;
  EXPECT_EQ(d.begin()->first, std::make_pair(st.st_dev, st.st_ino));
  ASSERT_GE(f.chunks.size(), lens.size() - 1);
  uint64_t off = 0;
  for (size_t i = 0; i < f.chunks.size(); i++) {
    EXPECT_EQ(f.chunks[i].offset, off);
    EXPECT_EQ(f.chunks[i].size, lens[i]);
    EXPECT_EQ(f.chunks[i].sha256, sha256_bytes(data.data() + off, lens[i])) << "chunk " << i;
    EXPECT_EQ(f.chunks[i].xxh3, xxh3_bytes(data.data() + off, lens[i])) << "chunk " << i;
    off += lens[i];
  }
  EXPECT_EQ(f.end, off);
}

TEST_F(StoreTest, FlushCommitsLatestAndVerifies) {
  EXPECT_EQ(*job_->latest_id(), "");
  auto one = add({{"images/pages-1.img", random_bytes(3 << 20, 1)}, {"images/core-1.img", "core"}});
  EXPECT_EQ(one.id, "0001");
  auto two = add({{"images/pages-1.img", "two"}});
  EXPECT_EQ(two.id, "0002");
  EXPECT_EQ(*job_->latest_id(), "0002");
  EXPECT_TRUE(verify(*job_, "0001").ok());
  EXPECT_TRUE(verify(*job_, "0002").ok());
  EXPECT_EQ(one.total_bytes, (3u << 20) + 4 + 11);
  bool chunked = false;
  for (const auto& f : one.files) chunked |= f.path == "images/pages-1.img" && f.chunked && f.chunks.size() >= 1;
  EXPECT_TRUE(chunked);
  // CRIU's log stays readable beside the manifest.
  EXPECT_EQ(read_all(job_->checkpoint_dir("0001") + "/criu-dump.log"), "CRIU's log\n");
}

// The one way a checkpoint enters the store: a commit whose files cannot
// be written leaves the latest as it was and nothing of itself.
TEST_F(StoreTest, AFailedCommitLeavesNoTrace) {
  add({{"images/pages-1.img", "one"}});
  Manifest m = new_manifest(job_->name(), "0002", sys::now());
  std::string seen;
  Status st = job_->commit(m, [&](const std::string& dir) -> Status {
    seen = dir;
    return make_error(ErrorKind::no_space, "the disk is full");
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(kind_of(st.error()), ErrorKind::no_space);
  EXPECT_FALSE(seen.empty());
  EXPECT_FALSE(fs::exists(seen));
  EXPECT_EQ(*job_->latest_id(), "0001");
  EXPECT_EQ(*job_->checkpoint_ids(), std::vector<std::string>{"0001"});
  // And one that succeeds is signed, stamped and the latest.
  ASSERT_TRUE(job_->commit(m).ok());
  EXPECT_EQ(*job_->latest_id(), "0002");
  auto loaded = load_signed_manifest(*job_, "0002");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->host, sys::hostname());
  EXPECT_NE(loaded->cryo_version.find('+'), std::string::npos) << loaded->cryo_version;
}

TEST_F(StoreTest, ReadsBackFromTheFastCopyOrTheStore) {
  std::string data = random_bytes(5 << 20, 7);
  add({{"images/pages-1.img", data}});
  std::string source;
  EXPECT_TRUE(restored("0001", true, &source) == data);
  EXPECT_EQ(source, "fast copy");
  EXPECT_TRUE(restored("0001", false, &source) == data);
  EXPECT_EQ(source, "store");
}

TEST_F(StoreTest, ADamagedFastCopyIsNotUsed) {
  std::string data = random_bytes(2 << 20, 3);
  add({{"images/pages-1.img", data}});
  std::string copy = only_staged().dir;
  ASSERT_FALSE(copy.empty());
  {
    std::fstream f(copy + "/images/pages-1.img", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(12345);
    f.put('x');
  }
  auto m = materialize(*job_, tier_, "0001", *job_->load_manifest("0001"), true);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->source, "store");
  EXPECT_NE(m->warning.find("damaged"), std::string::npos) << m->warning;
  EXPECT_TRUE(read_all(m->dir + "/images/pages-1.img") == data);
  release(*m);
}

TEST_F(StoreTest, SecondCheckpointStoresOnlyWhatChanged) {
  std::string a = random_bytes(96 << 20, 1);
  auto one = add({{"images/pages-1.img", a}});
  std::string b = a;
  // A tenth rewritten, and a page appearing before it (a new heap page).
  std::string fresh = random_bytes(b.size() / 10, 9);
  b.replace(b.size() / 2, fresh.size(), fresh);
  b.insert(1 << 20, random_bytes(4096, 5));
  auto two = add({{"images/pages-1.img", b}});
  EXPECT_GT(one.stored_bytes, a.size() * 99 / 100);  // random data does not compress
  EXPECT_LT(two.stored_bytes, one.stored_bytes * 15 / 100) << two.stored_bytes;
  EXPECT_TRUE(restored("0002", false) == b);
}

TEST_F(StoreTest, HalfZeroPagesAreStoredInHalf) {
  std::string a = random_bytes(16 << 20, 4);
  for (size_t p = 0; p < a.size(); p += 8192) std::memset(&a[p], 0, 4096);
  auto one = add({{"images/pages-1.img", a}});
  EXPECT_LE(one.stored_bytes, a.size() * 55 / 100);
  EXPECT_TRUE(restored("0001", false) == a);
}

TEST_F(StoreTest, AFlippedByteInAnyChunkIsNamed) {
  add({{"images/pages-1.img", random_bytes(6 << 20, 2)}});
  auto m = job_->load_manifest("0001");
  ASSERT_TRUE(m.ok());
  std::string victim;
  uint64_t at = 0;
  for (const auto& f : m->files)
    if (f.path == "images/pages-1.img") {
      victim = job_->chunks().pack_path(f.chunks.back().pack);
      at = f.chunks.back().offset + 100;
    }
  ASSERT_FALSE(victim.empty());
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(at));
    f.put(static_cast<char>(c ^ 1));
  }
  auto st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("images/pages-1.img"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find(victim), std::string::npos) << st.error().message;
  EXPECT_FALSE(materialize(*job_, tier_, "0001", *job_->load_manifest("0001"), false).ok());
}

// A restore from the store streams the images to CRIU (store/stream.h):
// each file reads back byte for byte, in any order and any size of read,
// from several readers at once; the directory lists them and takes no
// writes.
TEST_F(StoreTest, AStoreCopyStreamsByteForByte) {
  std::string one = random_bytes(20 << 20, 21);
  std::string two = random_bytes(8 << 20, 22);
  for (size_t p = 0; p < two.size(); p += 8192) std::memset(&two[p], 0, 4096);
  std::string zeros(16 << 20, '\0');  // the same chunk over and over
  add({{"images/pages-1.img", one}, {"images/pages-2.img", two}, {"images/pages-3.img", zeros},
       {"images/core-1.img", "core"}});
  auto m = materialize(*job_, tier_, "0001", *job_->load_manifest("0001"), false, {}, true);
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_TRUE(m->stream) << "no stream: is /dev/fuse there?";
  EXPECT_EQ(m->source, "store");
  int dir = m->stream->images_dir();
  auto read_file = [&](const std::string& name, size_t step, bool backwards) {
    UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << name << ": " << std::strerror(errno);
    struct stat st {};
    ::fstat(fd.get(), &st);
    std::string out(static_cast<size_t>(st.st_size), '\0');
    std::vector<size_t> offsets;
    for (size_t off = 0; off < out.size(); off += step) offsets.push_back(off);
    if (backwards) std::reverse(offsets.begin(), offsets.end());
    for (size_t off : offsets) {
      size_t n = std::min(step, out.size() - off);
      EXPECT_EQ(::pread(fd.get(), &out[off], n, static_cast<off_t>(off)), static_cast<ssize_t>(n)) << name << " at " << off;
    }
    return out;
  };
  std::string got_one, got_two;
  std::thread other([&] { got_two = read_file("pages-2.img", 1 << 20, false); });
  got_one = read_file("pages-1.img", 300 << 10, false);
  other.join();
  EXPECT_TRUE(got_one == one);
  EXPECT_TRUE(got_two == two);
  // Read again, backwards: what was dropped once read is fetched again.
  EXPECT_TRUE(read_file("pages-1.img", 1 << 20, true) == one);
  EXPECT_TRUE(read_file("pages-3.img", 1 << 20, false) == zeros);
  EXPECT_EQ(read_file("core-1.img", 4096, false), "core");
  EXPECT_FALSE(UniqueFd(::openat(dir, "pstree.img", O_RDONLY | O_CLOEXEC)).valid());
  EXPECT_EQ(errno, ENOENT);
  EXPECT_FALSE(UniqueFd(::openat(dir, "stats-restore", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)).valid());
  std::set<std::string> names;
  DIR* d = ::fdopendir(::dup(dir));
  ASSERT_NE(d, nullptr);
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.') names.insert(e->d_name);
  ::closedir(d);
  EXPECT_EQ(names, (std::set<std::string>{"core-1.img", "pages-1.img", "pages-2.img", "pages-3.img"}));
  EXPECT_TRUE(m->stream->finish().ok());
  release(*m);
}

// A damaged chunk is never handed over: the read fails, and the error
// names the file and the chunk.  finish() checks what no one read.
// A fast copy is streamed too (a read from FUSE with direct I/O pins the
// reader's pages instead of faulting them in one by one), each piece
// checked by its XXH3; a damaged piece fails the read and is named, with
// no hint, since the restore then falls back to the store.
TEST_F(StoreTest, AFastCopyStreamsAndADamagedPieceIsNamed) {
  std::string one = random_bytes(7 << 20, 31);
  std::string zeros(6 << 20, '\0');
  add({{"images/pages-1.img", one}, {"images/pages-2.img", zeros}, {"images/core-1.img", "core"}});
  std::string copy = only_staged().dir;
  ASSERT_FALSE(copy.empty());
  auto manifest = job_->load_manifest("0001");
  ASSERT_TRUE(manifest.ok());
  auto read_whole = [](int dir, const char* name, std::string* out) {
    UniqueFd fd(::openat(dir, name, O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return false;
    std::string buf(16 << 20, '\0');
    ssize_t got = 0, n;
    while ((n = ::pread(fd.get(), &buf[got], buf.size() - got, got)) > 0) got += n;
    buf.resize(static_cast<size_t>(got));
    *out = buf;
    return n == 0;
  };
  {
    auto m = materialize(*job_, tier_, "0001", *manifest, true, {}, true);
    ASSERT_TRUE(m.ok()) << m.error().message;
    ASSERT_TRUE(m->stream) << "no stream: is /dev/fuse there?";
    EXPECT_EQ(m->source, "fast copy");
    std::string got;
    EXPECT_TRUE(read_whole(m->stream->images_dir(), "pages-1.img", &got) && got == one);
    EXPECT_TRUE(read_whole(m->stream->images_dir(), "pages-2.img", &got) && got == zeros);
    EXPECT_TRUE(m->stream->finish().ok());  // core-1.img, unread, checked here
    release(*m);
  }
  {
    std::fstream f(copy + "/images/pages-1.img", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5 << 20);
    f.put('x');
  }
  auto m = materialize(*job_, tier_, "0001", *manifest, true, {}, true);
  ASSERT_TRUE(m.ok() && m->stream);
  std::string got;
  EXPECT_FALSE(read_whole(m->stream->images_dir(), "pages-1.img", &got));
  EXPECT_EQ(errno, EIO);
  auto e = m->stream->failure();
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message.find("the fast copy's " + copy + "/images/pages-1.img is damaged"), std::string::npos)
      << e->message;
  EXPECT_TRUE(e->hint.empty()) << e->hint;
  EXPECT_FALSE(m->stream->finish().ok());
  release(*m);
}

TEST_F(StoreTest, AStreamServesNoDamagedChunkAndNamesIt) {
  add({{"images/pages-1.img", random_bytes(6 << 20, 23)}, {"images/pages-2.img", random_bytes(3 << 20, 24)}});
  auto manifest = job_->load_manifest("0001");
  ASSERT_TRUE(manifest.ok());
  auto flip = [&](const std::string& image) {
    for (const auto& f : manifest->files)
      if (f.path == image) {
        std::string pack = job_->chunks().pack_path(f.chunks.back().pack);
        std::fstream io(pack, std::ios::in | std::ios::out | std::ios::binary);
        auto at = static_cast<std::streamoff>(f.chunks.back().offset + 100);
        io.seekg(at);
        char c = static_cast<char>(io.get());
        io.seekp(at);
        io.put(static_cast<char>(c ^ 1));
        return pack;
      }
    return std::string();
  };
  std::string victim = flip("images/pages-1.img");
  ASSERT_FALSE(victim.empty());
  {
    auto m = materialize(*job_, tier_, "0001", *manifest, false, {}, true);
    ASSERT_TRUE(m.ok() && m->stream);
    UniqueFd fd(::openat(m->stream->images_dir(), "pages-1.img", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    std::string buf(6 << 20, '\0');
    ssize_t got = 0, n;
    while ((n = ::pread(fd.get(), &buf[got], buf.size() - got, got)) > 0) got += n;
    EXPECT_EQ(n, -1);
    EXPECT_EQ(errno, EIO);
    EXPECT_LT(got, 6 << 20);
    auto e = m->stream->failure();
    ASSERT_TRUE(e.has_value());
    EXPECT_NE(e->message.find("images/pages-1.img"), std::string::npos) << e->message;
    EXPECT_NE(e->message.find(victim), std::string::npos) << e->message;
    EXPECT_NE(e->hint.find("damaged"), std::string::npos) << e->hint;
    EXPECT_FALSE(m->stream->finish().ok());
    release(*m);
  }
  flip("images/pages-1.img");  // mended
  victim = flip("images/pages-2.img");
  auto m = materialize(*job_, tier_, "0001", *manifest, false, {}, true);
  ASSERT_TRUE(m.ok() && m->stream);
  Status st = m->stream->finish();  // nothing was read
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("images/pages-2.img"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find(victim), std::string::npos) << st.error().message;
  release(*m);
}

// Someone who can write the store, but not read the key, changes what a
// restore would do: the manifest no longer matches its signature.
// The flush takes a follower's SHA-256 only for a chunk whose content
// still has the XXH3-128 the follower saw; any other it hashes itself.
TEST_F(StoreTest, AFollowersHashIsTakenOnlyWhereTheContentStillMatches) {
  std::string data = random_bytes(6 << 20, 12);
  auto lens = cut(data.data(), data.size());
  ASSERT_GE(lens.size(), 2u);
  Staged s = stage({{"images/pages-1.img", data}}, tier_);
  struct stat st;
  ASSERT_EQ(::stat((s.dir + "/images/pages-1.img").c_str(), &st), 0);
  // Chunk 0 as the follower saw it, but with a name that is not its hash,
  // so that taking it shows; chunk 1 as it was before it changed.
  std::string bogus(64, 'f');
  std::string stale = random_bytes(lens[1], 13);
  FileDigests f;
  f.chunks.push_back({0, lens[0], bogus, xxh3_bytes(data.data(), lens[0])});
  f.chunks.push_back({lens[0], lens[1], sha256_bytes(stale.data(), stale.size()), xxh3_bytes(stale.data(), stale.size())});
  f.end = lens[0] + lens[1];
  Digests digests{{{st.st_dev, st.st_ino}, f}};
  FlushOptions o;
  o.digests = &digests;
  ASSERT_TRUE(flush(*job_, tier_, o).ok());
  auto m = job_->load_manifest(s.id);
  ASSERT_TRUE(m.ok());
  const FileSum* pages = nullptr;
  for (const auto& file : m->files)
    if (file.path == "images/pages-1.img") pages = &file;
  ASSERT_NE(pages, nullptr);
  ASSERT_EQ(pages->chunks.size(), lens.size());
  EXPECT_EQ(pages->chunks[0].hash, bogus);
  EXPECT_EQ(pages->chunks[1].hash, sha256_bytes(data.data() + lens[0], lens[1]));
  // Had the follower been wrong, the store would still refuse the chunk.
  auto v = verify(*job_, s.id);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find(bogus.substr(0, 12)), std::string::npos) << v.error().message;
}

// 'cryo rm' frees the fast copies the job made in any fast tier, from the
// list in the job's directory; an entry someone else wrote there names
// nothing else to remove.
TEST_F(StoreTest, FastDirsUsedAreOnlyTheJobsOwn) {
  Staged s = stage({{"images/pages-1.img", "x"}}, tier_);
  ASSERT_TRUE(s.fast);
  std::string own = fast_dir(tier_, *job_);
  EXPECT_EQ(fast_dirs_used(*job_), std::vector<std::string>{own});
  stage({{"images/pages-1.img", "y"}}, tier_);
  EXPECT_EQ(fast_dirs_used(*job_), std::vector<std::string>{own});  // listed once
  std::string name = own.substr(own.rfind('/'));
  fs::create_directories(root_ + "/elsewhere" + name + "-not");
  fs::create_directories(root_ + "/target");
  fs::create_directories(root_ + "/links");
  fs::create_directory_symlink(root_ + "/target", root_ + "/links" + name);
  {
    std::ofstream f(job_->store_file("fast-dirs"), std::ios::app);
    f << "/etc\n" << root_ << "/elsewhere/../target\n" << root_ << "/elsewhere" << name << "-not\n"
      << root_ << "/missing" << name << "\n" << root_ << "/links" << name << "\n" << "relative" << name << "\n";
  }
  EXPECT_EQ(fast_dirs_used(*job_), std::vector<std::string>{own});
}

// A dump left unflushed in another fast tier (cryo was killed, and the
// next command runs with another --fast-tier): a new dump does not take
// its id, and the next flush commits both, in order.
TEST_F(StoreTest, ADumpLeftInAnotherFastTierIsFlushedAndItsIdKept) {
  FastTier other = tier_;
  other.root = root_ + "/other";
  fs::create_directories(other.root);
  Staged left = stage({{"images/pages-1.img", random_bytes(1 << 20, 1)}}, other);
  ASSERT_TRUE(left.fast);
  Staged next = stage({{"images/pages-1.img", random_bytes(1 << 20, 2)}}, tier_);
  EXPECT_EQ(left.id, "0001");
  EXPECT_EQ(next.id, "0002");
  auto r = flush(*job_, tier_, FlushOptions{});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->committed, (std::vector<std::string>{"0001", "0002"}));
  EXPECT_TRUE(verify(*job_, "0001").ok());
  EXPECT_FALSE(fs::exists(left.dir)) << "the older fast copy is no use once 0002 is committed";
}

TEST(PageImages, AreKnownByTheirFileName) {
  EXPECT_TRUE(is_page_image("pages-1.img"));
  EXPECT_TRUE(is_page_image("images/pages-12.img"));
  EXPECT_TRUE(is_page_image("/dev/shm/cryo/job-0a/0001/images/pages-3.img"));
  EXPECT_FALSE(is_page_image("pagemap-1.img"));
  EXPECT_FALSE(is_page_image("images/pages-1.img.tmp"));
  EXPECT_FALSE(is_page_image("pages-/x.img"));
  EXPECT_FALSE(is_page_image("pages-.img"));
}

// A flush's progress report that does not read (a number that is no
// PID) is no flush in progress, not a crash of whoever asks.
TEST_F(StoreTest, AFlushReportThatDoesNotReadIsNoFlush) {
  for (const char* text : {R"({"pid": 1e300})", R"({"pid": "x"})", R"({"pid": 1, "done": -1})", "[]", "{"}) {
    std::ofstream(job_->store_file("flushing.json")) << text;
    EXPECT_FALSE(flush_state(*job_).running) << text;
  }
  std::ofstream(job_->store_file("flushing.json")) << R"({"pid": )" << ::getpid() << R"(, "id": "0001", "done": 5, "total": 9})";
  auto s = flush_state(*job_);
  EXPECT_TRUE(s.running);
  EXPECT_EQ(s.done, 5u);
}

TEST_F(StoreTest, AManifestThatIsNotJsonIsCalledDamaged) {
  add({{"images/pages-1.img", random_bytes(1 << 16, 4)}});
  std::string path = job_->checkpoint_dir("0001") + "/manifest.json";
  std::string text = read_all(path);
  std::ofstream(path) << text.substr(0, text.size() / 2);
  auto m = load_signed_manifest(*job_, "0001");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("the manifest '" + path + "' is damaged: it is not valid JSON"), std::string::npos)
      << m.error().message;
  EXPECT_FALSE(verify(*job_, "0001").ok());
}

// A flush pass reads the committed manifests (all the chunks they name)
// only when it has a checkpoint to commit: the pass before every restore
// usually has none, and a job's manifests grow with its memory.  A damaged
// manifest shows whether they were read.
TEST_F(StoreTest, AFlushWithNothingToCommitReadsNoManifest) {
  add({{"images/pages-1.img", random_bytes(1 << 16, 4)}});
  add({{"images/pages-1.img", random_bytes(1 << 16, 5)}});
  std::string path = job_->checkpoint_dir("0001") + "/manifest.json";
  std::string text = read_all(path);
  std::ofstream(path) << text.substr(0, text.size() / 2);
  auto r = flush(*job_, tier_, FlushOptions{});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->committed.empty());

  // With one to commit, it still will not guess which chunks are in use.
  stage({{"images/pages-1.img", random_bytes(1 << 16, 6)}}, tier_);
  r = flush(*job_, tier_, FlushOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot tell which chunks are in use"), std::string::npos) << r.error().message;
}

TEST_F(StoreTest, AChangedManifestIsRefused) {
  add({{"images/pages-1.img", random_bytes(1 << 20, 3)}});
  ASSERT_TRUE(verify(*job_, "0001").ok());
  std::string path = job_->checkpoint_dir("0001") + "/manifest.json";
  auto j = nlohmann::json::parse(read_all(path));
  j["job_state"]["files"] = nlohmann::json::array({{{"path", "/etc/passwd"}}});
  std::ofstream(path) << j.dump(1);
  auto st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("has been changed since cryo wrote it"), std::string::npos) << st.error().message;
  EXPECT_FALSE(load_signed_manifest(*job_, "0001").ok());
  EXPECT_TRUE(job_->load_manifest("0001").ok()) << "it can still be listed and removed";

  j.erase("signature");
  std::ofstream(path) << j.dump(1);
  st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("is not signed"), std::string::npos) << st.error().message;
}

// Each chunk is known by the SHA-256 of its content, and the signed
// manifest fixes the hashes: a chunk replaced by a valid zstd frame of the
// same length but other content is refused.
TEST_F(StoreTest, AChunkReplacedByOtherContentIsRefused) {
  add({{"images/pages-1.img", random_bytes(6 << 20, 2)}});
  auto m = job_->load_manifest("0001");
  ASSERT_TRUE(m.ok());
  const auto& chunks = m->files[0].path == "images/pages-1.img" ? m->files[0].chunks : m->files[1].chunks;
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].hash.size(), 64u);
  // Random data does not compress: a frame of other random data of the same
  // size has the same length.
  PackWriter forger(job_->chunks(), "forger");
  std::string other = random_bytes(chunks[0].size, 99);
  auto frame = forger.put(other.data(), other.size(), -1);
  ASSERT_TRUE(frame.ok());
  ASSERT_EQ(frame->stored, chunks[0].stored);
  ASSERT_TRUE(forger.sync().ok());  // put() only gathers the frame
  std::string bytes = read_all(job_->chunks().pack_path(frame->pack)).substr(frame->offset, frame->stored);
  patch(job_->chunks().pack_path(chunks[0].pack), chunks[0].offset, bytes);
  auto st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("the checksum of its chunk " + chunks[0].hash), std::string::npos)
      << st.error().message;
}

// Checkpoints of format 3, with each chunk a file of its own, are still
// restored, their chunks shared with new checkpoints, and collected.
TEST_F(StoreTest, FormatThreeChunkFilesAreStillReadAndCollected) {
  std::string data = random_bytes(3 << 20, 21);
  add({{"images/pages-1.img", data}});
  // Rewrite 0001 as the previous cryo wrote it.
  auto m = job_->load_manifest("0001");
  ASSERT_TRUE(m.ok());
  ChunkStore chunks = job_->chunks();
  for (auto& f : m->files)
    for (auto& c : f.chunks) {
      std::string frame = read_all(chunks.pack_path(c.pack)).substr(c.offset, c.stored);
      fs::create_directories(fs::path(chunks.legacy_path(c.hash)).parent_path());
      std::ofstream(chunks.legacy_path(c.hash), std::ios::binary) << frame;
      c.pack.clear();
      c.offset = c.stored = 0;
    }
  m->format = 3;
  auto text = signed_manifest_text(*m);
  ASSERT_TRUE(text.ok());
  std::ofstream(job_->checkpoint_dir("0001") + "/manifest.json") << *text;
  fs::remove_all(chunks.dir() + "/packs");
  EXPECT_TRUE(verify(*job_, "0001").ok());
  EXPECT_TRUE(restored("0001", false) == data);

  // A new checkpoint of the same data refers to the old chunk files.
  auto two = add({{"images/pages-1.img", data}});
  EXPECT_EQ(two.format, 4);
  EXPECT_EQ(packs_used({"0002"}), std::set<std::string>{""});
  EXPECT_TRUE(restored("0002", false) == data);
  // Once no checkpoint names them, they go.
  add({{"images/pages-1.img", random_bytes(1 << 20, 22)}}, 1);
  EXPECT_TRUE(sys::files_below(chunks.dir())->size() == packs_present().size());
  EXPECT_TRUE(verify(*job_, "0003").ok());
}

TEST_F(StoreTest, AnotherNodesKeyOrNoneIsNamed) {
  add({{"images/pages-1.img", "x"}});
  std::string mine = root_ + "/key";
  set_key(root_ + "/other-key");
  auto st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("has no key"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().hint.find("copy"), std::string::npos) << st.error().hint;
  ASSERT_TRUE(SigningKey::load(root_ + "/other-key", true).ok());
  st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("was signed with key"), std::string::npos) << st.error().message;
  set_key(mine);
  EXPECT_TRUE(verify(*job_, "0001").ok());
  fs::permissions(mine, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("can be read by other users"), std::string::npos) << st.error().message;
}

TEST_F(StoreTest, VerifyRefusesAnUnlistedFile) {
  add({{"images/pages-1.img", "x"}});
  std::ofstream(job_->checkpoint_dir("0001") + "/forged.img") << "evil";
  auto st = verify(*job_, "0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("forged.img"), std::string::npos);
}

TEST_F(StoreTest, CreateRefusesAnExistingJobAndBadNames) {
  auto again = job_->create();
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().hint.find("cryo restore j"), std::string::npos);
  EXPECT_FALSE(JobDir(root_, "../x").create().ok());
  EXPECT_FALSE(JobDir(root_, ".hidden").create().ok());
}

TEST_F(StoreTest, RetentionKeepsNewestAndDropsUnusedChunks) {
  std::string shared = random_bytes(4 << 20, 11);
  for (int i = 0; i < 5; i++) add({{"images/pages-1.img", shared + random_bytes(2 << 20, 100 + i)}}, 2);
  EXPECT_EQ(*job_->checkpoint_ids(), (std::vector<std::string>{"0004", "0005"}));
  EXPECT_EQ(*job_->latest_id(), "0005");
  // Only the packs 0004 and 0005 refer to are left, and of them only what
  // they refer to takes space: the rest is punched out.  They still verify.
  uint64_t live = 0;
  EXPECT_EQ(packs_present(), packs_used({"0004", "0005"}, &live));
  EXPECT_LE(sys::disk_usage(job_->chunks().dir() + "/packs"), live);
  EXPECT_TRUE(verify(*job_, "0004").ok());
  EXPECT_TRUE(verify(*job_, "0005").ok());
}

TEST_F(StoreTest, RetentionSparesLatestEvenIfOldest) {
  add({{"images/pages-1.img", "a"}});
  add({{"images/pages-1.img", "b"}});
  ASSERT_TRUE(sys::symlink_atomic("checkpoints/0001", job_->store_file("latest")).ok());
  auto removed = job_->apply_retention(1);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, std::vector<std::string>{"0002"});
  EXPECT_EQ(*job_->checkpoint_ids(), std::vector<std::string>{"0001"});
}

// The fast tier's sweep, with the job's need of its copy as the seam: a
// durable copy goes when its job does not need it here (unless a restore
// reads it), a copy not yet durable stays, and the copies of a job whose
// directory is gone from the store go.
TEST_F(StoreTest, TheSweepFreesOnlyWhatNoJobHereNeeds) {
  add({{"images/pages-1.img", "one"}});  // j: a durable fast copy
  JobDir other(root_ + "/store", "k");
  ASSERT_TRUE(other.create().ok());
  auto p = begin_dump(other, tier_, 0);  // k: a dump not flushed yet
  ASSERT_TRUE(p.ok());
  Manifest m;
  m.job = "k";
  ASSERT_TRUE(end_dump(*p, m).ok());
  auto held = [&] {
    std::set<std::string> out;
    for (const auto& c : list_fast_copies(tier_))
      out.insert(c.store_job_dir.substr(c.store_job_dir.rfind('/') + 1) + c.id + (c.durable ? " durable" : ""));
    return out;
  };
  EXPECT_EQ(held(), (std::set<std::string>{"j0001 durable", "k0001"}));
  auto keep_all = [](const std::string&) { return true; };
  EXPECT_TRUE(sweep_fast_tier(tier_, keep_all).empty());
  std::set<std::string> asked;
  auto keep_none = [&](const std::string& d) {
    asked.insert(d);
    return false;
  };
  {
    auto reading = hold_copy(only_staged(), false);  // a restore reads it
    ASSERT_TRUE(reading.ok());
    EXPECT_TRUE(sweep_fast_tier(tier_, keep_none).empty());
  }
  auto freed = sweep_fast_tier(tier_, keep_none);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].store_job_dir, job_->path());
  EXPECT_EQ(asked, std::set<std::string>{job_->path()}) << "only durable copies are the job's to give up";
  EXPECT_EQ(held(), std::set<std::string>{"k0001"}) << "not durable: the next command on the job commits it";
  // A link planted in the tier (anyone may write there) leads nowhere.
  std::string outside = root_ + "/outside";
  fs::create_directories(outside + "/0001");
  std::ofstream(outside + "/0001/dump.json") << R"({"id": "0001", "store_job_dir": ")" << root_ << R"(/store/gone"})";
  fs::create_directory_symlink(outside, tier_.root + "/planted");
  fs::create_directories(tier_.root + "/x");
  fs::create_directory_symlink(outside + "/0001", tier_.root + "/x/0001");
  EXPECT_EQ(held(), std::set<std::string>{"k0001"});
  EXPECT_TRUE(sweep_fast_tier(tier_, keep_none).empty());
  EXPECT_TRUE(fs::exists(outside + "/0001/dump.json"));
  EXPECT_FALSE(fs::exists(outside + "/0001/.lock")) << "the sweep locked a directory outside the tier";
  fs::remove(tier_.root + "/planted");
  fs::remove_all(tier_.root + "/x");
  fs::remove_all(other.path());
  freed = sweep_fast_tier(tier_, keep_all);
  ASSERT_EQ(freed.size(), 1u) << "its job is gone from a store that is there";
  EXPECT_TRUE(list_fast_copies(tier_).empty());
}

TEST_F(StoreTest, AFullFastTierSendsTheDumpToTheStore) {
  FastTier small = tier_;
  small.limit = 1 << 20;
  auto p = begin_dump(*job_, small, 64 << 20);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->fast);
  EXPECT_EQ(p->dir.rfind(job_->path() + "/staging/", 0), 0u) << p->dir;
  abort_dump(*p);
  // And a dump staged in the store is flushed like any other, then removed.
  std::string data = random_bytes(1 << 20, 8);
  Staged s = stage({{"images/pages-1.img", data}}, small);
  EXPECT_FALSE(s.fast);
  ASSERT_TRUE(flush(*job_, small, {}).ok());
  EXPECT_FALSE(fs::exists(s.dir));
  EXPECT_TRUE(restored(s.id, true) == data);
}

TEST_F(StoreTest, ANewDumpTakesTheRoomOfTheFastCopyItReplaces) {
  std::string data = random_bytes(20 << 20, 31);
  add({{"images/pages-1.img", data}});
  std::string copy = only_staged().dir;
  ASSERT_FALSE(copy.empty());
  // Room for the next dump of 20 MiB with its margin (37.25 MiB), but not
  // beside the copy: the copy, set aside for removal, counts as free.
  FastTier small = tier_;
  small.limit = 42 << 20;
  {
    auto p = begin_dump(*job_, small, 20 << 20);
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_TRUE(p->fast) << "the copy being replaced was counted as taken";
    EXPECT_FALSE(fs::exists(copy));
    abort_dump(*p);
  }
  // With the dump done with, the copy's removal is over: nothing of it is
  // left in the tier, and the checkpoint reads back from the store.
  for (const auto& e : fs::recursive_directory_iterator(tier_.root))
    EXPECT_TRUE(e.is_directory()) << "left in the fast tier: " << e.path();
  std::string source;
  EXPECT_TRUE(restored("0001", true, &source) == data);
  EXPECT_EQ(source, "store");
}

TEST_F(StoreTest, ChunksSeenBeforeAreNotHashedAgain) {
  // 8 MiB of zero pages make identical chunks; each is hashed once.
  std::string first = std::string(8 << 20, '\0') + random_bytes(4 << 20, 51);
  stage({{"images/pages-1.img", first}}, tier_);
  auto r = flush(*job_, tier_, {});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_GT(r->hashed_bytes, 0u);
  EXPECT_LT(r->hashed_bytes, first.size() - (2 << 20)) << "a repeated chunk was hashed again";
  // The next checkpoint, one page changed: only the chunk around it is new.
  std::string second = first;
  second[(10 << 20) + 100] ^= 1;
  Staged s = stage({{"images/pages-1.img", second}}, tier_);
  r = flush(*job_, tier_, {});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_GT(r->hashed_bytes, 0u);
  EXPECT_LE(r->hashed_bytes, Chunking{}.max) << "unchanged chunks were hashed again";
  EXPECT_TRUE(verify(*job_, s.id).ok());
  EXPECT_TRUE(restored(s.id, false) == second);
  EXPECT_TRUE(restored("0001", false) == first);
}

class FlushCrashTest : public StoreTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(FlushCrashTest, PreviousCheckpointSurvivesAndTheNextFlushCarriesOn) {
  std::string first = random_bytes(8 << 20, 1);
  add({{"images/pages-1.img", first}}, 1);
  std::string second = random_bytes(8 << 20, 2);
  Staged s = stage({{"images/pages-1.img", second}, {"files/0", "result"}}, tier_);
  pid_t pid = ::fork();
  if (pid == 0) {
    set_fault_points(GetParam());
    FlushOptions o;
    o.keep = 1;
    (void)flush(*job_, tier_, o);
    ::_exit(0);
  }
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the fault point was not reached";
  std::string phase = GetParam();
  bool committed = phase == "store.before_latest" || phase == "flush.before_retention" || phase == "flush.gc";
  if (!committed) {
    EXPECT_EQ(*job_->latest_id(), "0001");
  }
  EXPECT_TRUE(verify(*job_, *job_->latest_id()).ok());
  EXPECT_TRUE(restored(*job_->latest_id(), false) == (*job_->latest_id() == "0001" ? first : second));
  // The next flush commits the dump (still complete in its tier), cleans
  // up after the dead one and applies retention.
  FlushOptions o;
  o.keep = 1;
  auto r = flush(*job_, tier_, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*job_->latest_id(), s.id);
  EXPECT_EQ(*job_->checkpoint_ids(), std::vector<std::string>{s.id});
  EXPECT_TRUE(verify(*job_, s.id).ok());
  EXPECT_TRUE(restored(s.id, false) == second);
  for (const auto& e : fs::directory_iterator(job_->checkpoints_dir()))
    EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
  EXPECT_EQ(packs_present(), packs_used({s.id}));
}

INSTANTIATE_TEST_SUITE_P(AtEachStep, FlushCrashTest,
                         ::testing::Values("flush.chunks", "flush.before_sync", "store.before_manifest",
                                           "store.before_rename", "store.before_latest", "flush.before_retention",
                                           "flush.gc"),
                         test::DottedParamName());

}  // namespace
}  // namespace cryo::store
