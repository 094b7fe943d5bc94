// The checks a restore makes first (job/preflight.h), against a node the
// test describes (the Node seam), and the mounts a job's namespace is
// split into (job/mounts.h).
#include "job/preflight.h"

#include <gtest/gtest.h>

#include <map>

#include "job/files.h"
#include "job/mounts.h"
#include "job/record.h"

namespace cryo::job {
namespace {

// A node like the one that took the checkpoint: every check passes.
struct Fixture {
  store::Manifest m;
  RestoreRecord r;
  Node node;
  std::map<std::string, std::pair<struct stat, std::string>> files;  // path -> stat, build-ID

  Fixture() {
    m.kernel = "6.18.0-1-amd64";
    m.criu_version = "4.2.1";
    store::FileSum pages, core;
    pages.path = "images/pages-1.img";
    pages.size = 512 << 20;
    core.path = "images/core-1.img";
    core.size = 4096;
    m.files = {pages, core};
    r.cpu_flags = {"avx", "avx2", "sse2"};
    r.needed = {{"/usr/bin/solver", false, 1000, "aa11"}, {"/usr/lib/libm.so.6", false, 2000, "bb22"},
                {"/scratch/run1", true, 0, ""}};
    r.mounts = std::vector<std::string>{"/scratch"};
    node.cpu_flags = {"avx", "avx2", "sse2", "fma"};
    node.kernel = "6.18.0-1-amd64";
    node.criu = criu::Version{4, 2, 1};
    node.mem_available = 8ull << 30;
    put("/usr/bin/solver", S_IFREG, 1000, "aa11");
    put("/usr/lib/libm.so.6", S_IFREG, 2000, "bb22");
    put("/scratch/run1", S_IFDIR, 0, "");
    put("/scratch", S_IFDIR, 0, "");
    node.stat = [this](const std::string& p) -> Result<struct stat> {
      auto it = files.find(p);
      if (it == files.end()) return make_error(ErrorKind::not_found, p + ": no such file");
      return it->second.first;
    };
    node.readable = [this](const std::string& p) { return files.count(p) > 0; };
    node.build_id = [this](const std::string& p) { return files.count(p) ? files[p].second : std::string(); };
    node.has_bridge = [](const std::string& name) { return name == "cryo-br0"; };
  }
  void put(const std::string& path, mode_t type, off_t size, const std::string& build_id) {
    struct stat st {};
    st.st_mode = type | 0755;
    st.st_size = size;
    files[path] = {st, build_id};
  }
  Check check(const std::string& name) {
    for (const auto& c : check_restore(m, r, node))
      if (c.name == name) return c;
    ADD_FAILURE() << "no check named " << name;
    return {};
  }
};

TEST(PreflightTest, TheNodeThatTookItPassesEveryCheck) {
  Fixture f;
  auto checks = check_restore(f.m, f.r, f.node);
  std::vector<std::string> names;
  for (const auto& c : checks) {
    names.push_back(c.name);
    EXPECT_EQ(c.verdict, Verdict::pass) << c.name << ": " << c.detail;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"cpu", "kernel", "criu", "files", "mounts", "memory"}));
  EXPECT_TRUE(first_failure(checks).ok());
}

TEST(PreflightTest, ACpuWithoutAnInstructionSetTheJobStartedWithFails) {
  Fixture f;
  f.node.cpu_flags.erase("avx2");
  auto c = f.check("cpu");
  EXPECT_EQ(c.verdict, Verdict::fail);
  EXPECT_NE(c.detail.find("lacks avx2"), std::string::npos) << c.detail;
  auto e = first_failure(check_restore(f.m, f.r, f.node));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().kind, ErrorKind::unfit);
  EXPECT_NE(e.error().hint.find("restore on a node whose CPU has them"), std::string::npos);
}

TEST(PreflightTest, AReplacedLibraryOrARemovedFileFails) {
  Fixture f;
  f.files["/usr/lib/libm.so.6"].second = "cc33";  // upgraded: another build, same size
  EXPECT_EQ(f.check("files").verdict, Verdict::fail);
  EXPECT_NE(f.check("files").detail.find("/usr/lib/libm.so.6 is another build"), std::string::npos);
  Fixture g;
  g.files.erase("/scratch/run1");
  EXPECT_NE(g.check("files").detail.find("/scratch/run1 is missing"), std::string::npos) << g.check("files").detail;
  Fixture h;
  h.files["/usr/bin/solver"].first.st_size = 999;
  EXPECT_NE(h.check("files").detail.find("has 999 bytes, not 1000"), std::string::npos) << h.check("files").detail;
}

TEST(PreflightTest, AMissingMountPointFails) {
  Fixture f;
  f.files.erase("/scratch");
  auto c = f.check("mounts");
  EXPECT_EQ(c.verdict, Verdict::fail);
  EXPECT_NE(c.detail.find("/scratch"), std::string::npos);
}

TEST(PreflightTest, AnOlderCriuFailsAnOlderKernelWarns) {
  Fixture f;
  f.node.criu = criu::Version{4, 2, 0};
  EXPECT_EQ(f.check("criu").verdict, Verdict::fail);
  EXPECT_EQ(f.check("criu").kind, ErrorKind::criu);
  Fixture g;
  g.node.criu = Result<criu::Version>(make_error(ErrorKind::criu, "CRIU is not installed").with_hint("install it"));
  EXPECT_EQ(g.check("criu").fix, "install it");
  Fixture h;
  h.node.kernel = "6.1.0-27-amd64";
  EXPECT_EQ(h.check("kernel").verdict, Verdict::warn);
  EXPECT_TRUE(first_failure(check_restore(h.m, h.r, h.node)).ok()) << "a warning does not refuse";
  h.node.kernel = "6.18.2";
  EXPECT_EQ(h.check("kernel").verdict, Verdict::pass);
}

TEST(PreflightTest, APartNeedsTheBridgeThatJoinsTheParts) {
  Fixture f;
  EXPECT_EQ(network_check("cryo-br0", "192.0.2.11/24", f.node).verdict, Verdict::pass);
  auto c = network_check("br-other", "192.0.2.11/24", f.node);
  EXPECT_EQ(c.verdict, Verdict::fail);
  EXPECT_NE(c.detail.find("no bridge 'br-other'"), std::string::npos) << c.detail;
}

TEST(PreflightTest, TooLittleFreeMemoryFails) {
  Fixture f;
  f.node.mem_available = 100 << 20;
  EXPECT_EQ(f.check("memory").verdict, Verdict::fail);
}

TEST(PreflightTest, CpuFlagsAreTheInstructionSetsOnly) {
  std::string x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 hypervisor avx512f constant_tsc amx_tile\nbugs\t\t: spectre_v1\n";
  EXPECT_EQ(cpu_flags(x86), (std::vector<std::string>{"amx_tile", "avx2", "avx512f", "sse2"}));
  std::string arm = "processor\t: 0\nFeatures\t: fp asimd aes sve\n";
  EXPECT_EQ(cpu_flags(arm), (std::vector<std::string>{"aes", "asimd", "fp", "sve"}));
}

TEST(MountsTest, TheJobsOwnMountsAreThoseTheNodeDoesNotHave) {
  std::string node =
      "22 1 254:1 / / rw - ext4 /dev/vda rw\n"
      "23 22 0:22 / /proc rw - proc proc rw\n"
      "24 22 0:6 / /dev rw - devtmpfs devtmpfs rw\n"
      "25 24 0:25 / /dev/shm rw - tmpfs tmpfs rw\n"
      "26 22 0:40 / /scratch\\040space rw shared:3 - nfs srv:/x rw\n";
  std::string job =
      "50 49 254:1 / / rw master:1 - ext4 /dev/vda rw\n"
      "51 50 0:6 / /dev rw - devtmpfs devtmpfs rw\n"
      "52 50 0:40 / /scratch\\040space rw master:3 - nfs srv:/x rw\n"
      "53 50 0:91 / /proc rw - proc proc rw\n"
      "54 51 0:92 / /dev/shm rw - tmpfs tmpfs rw\n";
  auto split = split_mounts(parse_mountinfo(job), parse_mountinfo(node));
  EXPECT_EQ(split.host, (std::vector<std::string>{"/dev", "/scratch space"}));
  EXPECT_EQ(split.own.size(), 2u);
  EXPECT_EQ(mount_externals(split.host)[1], "mnt[/scratch space]:/scratch space");
}

TEST(RecordTest, MountsNeededFilesAndCpuFlagsRoundTrip) {
  RestoreRecord r;
  r.mounts = std::vector<std::string>{"/sys", "/home"};
  r.needed = {{"/usr/bin/x", false, 10, "ab"}, {"/home/a", true, 0, ""}};
  r.cpu_flags = {"avx2"};
  auto back = record_from_json(to_json(r), "a test");
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_TRUE(back->mounts.has_value());
  EXPECT_EQ(*back->mounts, *r.mounts);
  ASSERT_EQ(back->needed.size(), 2u);
  EXPECT_EQ(back->needed[0].build_id, "ab");
  EXPECT_TRUE(back->needed[1].dir);
  EXPECT_EQ(back->cpu_flags, r.cpu_flags);
  EXPECT_FALSE(record_from_json(nlohmann::json{{"mounts", {"relative"}}}, "a test").ok());
  EXPECT_FALSE(record_from_json(nlohmann::json{{"mounts", {"/a]:/etc"}}}, "a test").ok());
  // A record from before mounts: the job had the node's namespace.
  EXPECT_FALSE(record_from_json(nlohmann::json{{"version", 1}}, "a test")->mounts.has_value());
}

TEST(FilesTest, TheBuildIdOfAnElfFile) {
  // Debian builds its binaries with a GNU build-ID; a text file has none.
  EXPECT_EQ(elf_build_id("/bin/true").size(), 40u);
  EXPECT_EQ(elf_build_id("/etc/hostname"), "");
  EXPECT_EQ(elf_build_id("/nonexistent"), "");
}

}  // namespace
}  // namespace cryo::job
