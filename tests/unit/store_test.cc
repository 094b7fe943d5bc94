// The store's commit protocol, including a crash at each of its steps.
// The seam is the process: a forked child commits with CRYO_FAULT set and
// is killed at the named point; the parent checks what is left.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/sys.h"
#include "store/store.h"

namespace cryo::store {
namespace {

namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-store-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Commits a checkpoint whose image holds `content`; returns its id.
  std::string add(JobDir& dir, const std::string& content) {
    auto p = dir.begin();
    EXPECT_TRUE(p.ok());
    std::ofstream(p->dir + "/images/pages-1.img") << content;
    Manifest m;
    m.job = dir.name();
    auto st = dir.commit(*p, m);
    EXPECT_TRUE(st.ok()) << st.error().message;
    return p->id;
  }

  std::string root_;
};

TEST_F(StoreTest, CommitMakesLatestAndVerifies) {
  JobDir dir(root_, "j");
  ASSERT_TRUE(dir.create().ok());
  EXPECT_EQ(*dir.latest_id(), "");
  EXPECT_EQ(add(dir, "one"), "0001");
  EXPECT_EQ(add(dir, "two"), "0002");
  EXPECT_EQ(*dir.latest_id(), "0002");
  EXPECT_TRUE(dir.verify("0001").ok());
  auto m = dir.load_manifest("0002");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->total_bytes, 3u);
  ASSERT_EQ(m->files.size(), 1u);
  EXPECT_EQ(m->files[0].path, "images/pages-1.img");
}

TEST_F(StoreTest, CreateRefusesAnExistingJobAndBadNames) {
  JobDir dir(root_, "j");
  ASSERT_TRUE(dir.create().ok());
  auto again = dir.create();
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().hint.find("cryo restore j"), std::string::npos);
  EXPECT_FALSE(JobDir(root_, "../x").create().ok());
  EXPECT_FALSE(JobDir(root_, ".hidden").create().ok());
}

TEST_F(StoreTest, VerifyNamesTheFlippedFile) {
  JobDir dir(root_, "j");
  ASSERT_TRUE(dir.create().ok());
  add(dir, std::string(10000, 'a'));
  std::string img = dir.checkpoint_dir("0001") + "/images/pages-1.img";
  {
    std::fstream f(img, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5000);
    f.put('b');
  }
  auto st = dir.verify("0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find(img), std::string::npos) << st.error().message;
}

TEST_F(StoreTest, VerifyRefusesAnUnlistedFile) {
  JobDir dir(root_, "j");
  ASSERT_TRUE(dir.create().ok());
  add(dir, "x");
  std::ofstream(dir.checkpoint_dir("0001") + "/images/forged.img") << "evil";
  auto st = dir.verify("0001");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("forged.img"), std::string::npos);
}

TEST_F(StoreTest, RetentionKeepsNewestAndNeverLatest) {
  JobDir dir(root_, "j");
  ASSERT_TRUE(dir.create().ok());
  for (int i = 0; i < 5; i++) add(dir, "c" + std::to_string(i));
  auto removed = dir.apply_retention(2);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, (std::vector<std::string>{"0001", "0002", "0003"}));
  EXPECT_EQ(*dir.checkpoint_ids(), (std::vector<std::string>{"0004", "0005"}));
  EXPECT_EQ(*dir.latest_id(), "0005");
}

TEST_F(StoreTest, RetentionSparesLatestEvenIfOldest) {
  JobDir dir(root_, "j");
  ASSERT_TRUE(dir.create().ok());
  add(dir, "a");
  add(dir, "b");
  ASSERT_TRUE(sys::symlink_atomic("checkpoints/0001", dir.file("latest")).ok());
  auto removed = dir.apply_retention(1);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, std::vector<std::string>{"0002"});
  EXPECT_EQ(*dir.checkpoint_ids(), std::vector<std::string>{"0001"});
}

class StoreCrashTest : public StoreTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(StoreCrashTest, PreviousCheckpointSurvivesACrash) {
  JobDir dir(root_, "j");
  ASSERT_TRUE(dir.create().ok());
  add(dir, "first");
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("CRYO_FAULT", GetParam(), 1);
    auto p = dir.begin();
    std::ofstream(p->dir + "/images/pages-1.img") << "second";
    std::ofstream(p->dir + "/images/core-1.img") << "core";
    Manifest m;
    (void)dir.commit(*p, m);
    ::_exit(0);
  }
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the fault point was not reached";
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(*dir.latest_id(), "0001");
  EXPECT_TRUE(dir.verify("0001").ok());
  // The next writer cleans up after the dead one and continues numbering.
  auto next = add(dir, "third");
  EXPECT_TRUE(next == "0002" || next == "0003") << next;
  EXPECT_EQ(*dir.latest_id(), next);
  auto names = sys::list_dir(dir.file("checkpoints"));
  ASSERT_TRUE(names.ok());
  for (const auto& n : names.value()) EXPECT_NE(n.rfind(".tmp-", 0), 0u) << n;
}

INSTANTIATE_TEST_SUITE_P(AtEachStep, StoreCrashTest,
                         ::testing::Values("store.checksum", "store.before_manifest", "store.before_rename",
                                           "store.before_latest"));

}  // namespace
}  // namespace cryo::store
