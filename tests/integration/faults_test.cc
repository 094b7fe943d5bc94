// cryo killed at each phase of a checkpoint: the job keeps running, the
// previous checkpoint stays intact and restorable.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace cryo::test {
namespace {

namespace fs = std::filesystem;

class FaultTest : public CryoTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(FaultTest, KilledCheckpointLosesNothing) {
  std::string arm = work_ + "/fault";
  std::ofstream(arm) << "";
  pid_t run = spawn({"run", "--name", "f", "--", prog("counter"), go_file("f")}, {{"CRYO_FAULT", "@" + arm}});
  ASSERT_TRUE(wait_for("f", "tick 10"));
  ASSERT_EQ(checkpoint("f"), "0001");
  std::ofstream(arm) << GetParam() << "\n";
  std::string err;
  int rc = cryo({"checkpoint", "f"}, nullptr, &err);
  std::ofstream(arm) << "";
  std::string phase = GetParam();
  bool committed_before_kill = phase == "store.before_latest" || phase == "checkpoint.before_retention";
  if (phase != "checkpoint.before_retention") {
    EXPECT_EQ(rc, 1) << err;
    EXPECT_NE(err.find("earlier checkpoints are unchanged"), std::string::npos) << err;
  }
  // The job runs on.
  pid_t job = job_pid("f");
  long now = last("f", "tick");
  ASSERT_TRUE(wait_for("f", "tick " + std::to_string(now + 10))) << "the job stopped";
  EXPECT_EQ(::kill(job, 0), 0);
  auto s = status("f");
  EXPECT_EQ(s["state"], "running");
  if (!committed_before_kill) {
    EXPECT_EQ(s["latest"], "0001");
  }
  EXPECT_EQ(cryo({"verify", "f", "0001"}), 0);
  EXPECT_EQ(cryo({"verify", "f"}), 0);
  for (const auto& e : fs::directory_iterator(store_ + "/f/checkpoints"))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
  // And it can still be restored from there.
  ::kill(job, SIGKILL);
  wait_exit(run);
  pid_t restore = spawn({"restore", "f"});
  long at = last("f", "tick");
  ASSERT_TRUE(wait_for("f", "tick " + std::to_string(at + 5)));
  go("f");
  EXPECT_EQ(wait_exit(restore), 0);
  EXPECT_EQ(count("f", "PASS"), 1);
  expect_sequence("f", "tick");
}

INSTANTIATE_TEST_SUITE_P(AtEachPhase, FaultTest,
                         ::testing::Values("checkpoint.before_dump", "checkpoint.post_dump", "checkpoint.after_dump",
                                           "store.checksum", "store.before_manifest", "store.before_rename",
                                           "store.before_latest", "checkpoint.before_retention"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '.') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace cryo::test
