// cryo killed at each phase of a checkpoint: the job keeps running, the
// previous checkpoint stays intact and restorable.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.h"
#include "param_name.h"

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
  int rc = cryo({"checkpoint", "f", "--wait"}, nullptr, &err);
  std::ofstream(arm) << "";
  std::string phase = GetParam();
  // (flush.gc, after retention, is in the store's unit tests.)
  bool committed_before_kill = phase == "flush.before_retention";
  // Killed once the dump was complete: the dump waits in the fast tier.
  bool dumped = phase.rfind("flush.", 0) == 0 || phase.rfind("store.", 0) == 0;
  EXPECT_EQ(rc, 1) << err;
  EXPECT_NE(err.find("earlier checkpoints are unchanged"), std::string::npos) << err;
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
  if (dumped && !committed_before_kill && phase != "store.before_latest") {
    ASSERT_EQ(s["pending"].size(), 1u) << s.dump();
    EXPECT_EQ(s["pending"][0]["id"], "0002");
  }
  // And it can still be restored; a dump left complete is committed first.
  ::kill(job, SIGKILL);
  wait_exit(run);
  std::string events = restore_ticking("f", 5);
  EXPECT_NE(events.find(std::string("restored from checkpoint ") + (dumped ? "0002" : "0001")), std::string::npos)
      << events;
}

// CRIU itself killed halfway through writing the images: the checkpoint
// fails with CRIU's story, the job runs on unharmed (its memory intact,
// and it can be checkpointed again), and the previous checkpoint stays
// the latest and restores.
TEST_F(CryoTest, CriuKilledMidDumpLosesNothing) {
  pid_t run = spawn({"run", "--name", "m", "--", prog("memhog"), go_file("m"), "768"});
  ASSERT_TRUE(wait_for("m", "READY", 60));
  ASSERT_EQ(checkpoint("m"), "0001");

  pid_t ck = spawn({"checkpoint", "m"});
  // Find CRIU (it retitles itself "criu: dump --rpc ...") once it has
  // written part of the memory, and kill it.
  pid_t criu = 0;
  for (int i = 0; i < 2000 && !criu; i++) {
    uint64_t written = 0;  // in the dump being written in the fast tier
    std::error_code ec;
    for (const auto& j : fs::directory_iterator(fast_))
      for (const auto& e : fs::directory_iterator(j.path(), ec))
        if (e.path().filename().string().rfind(".tmp-", 0) == 0 && fs::exists(e.path() / "images"))
          for (const auto& f : fs::directory_iterator(e.path() / "images", ec)) written += fs::file_size(f.path(), ec);
    if (written > (64u << 20))
      for (const auto& p : fs::directory_iterator("/proc")) {
        std::string cmd;
        if (read_text(p.path().string() + "/cmdline", &cmd) && cmd.find("criu: dump") != std::string::npos)
          criu = std::atoi(p.path().filename().c_str());
      }
    if (!criu) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_GT(criu, 0) << "never saw CRIU writing the images";
  ::kill(criu, SIGKILL);
  EXPECT_EQ(wait_exit(ck), 1);
  std::string events;
  read_text(store_ + "/m/cryo.log", &events);
  EXPECT_NE(events.find("checkpoint failed"), std::string::npos) << events;
  EXPECT_NE(events.find("earlier checkpoints are unchanged"), std::string::npos) << events;

  // The job runs on: not left stopped or traced, and dumpable again.
  pid_t job = job_pid("m");
  for (pid_t p : {job}) {
    std::string st;
    ASSERT_TRUE(read_text("/proc/" + std::to_string(p) + "/status", &st));
    EXPECT_NE(st.find("TracerPid:\t0\n"), std::string::npos) << st;
    EXPECT_EQ(st.find("State:\tT"), std::string::npos) << st;
    EXPECT_EQ(st.find("State:\tt"), std::string::npos) << st;
  }
  auto s = status("m");
  EXPECT_EQ(s["state"], "running");
  EXPECT_EQ(s["latest"], "0001");
  EXPECT_EQ(cryo({"verify", "m", "0001"}), 0);
  for (const auto& e : fs::directory_iterator(store_ + "/m/checkpoints"))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
  std::string next = checkpoint("m");
  EXPECT_FALSE(next.empty());
  EXPECT_NE(next, "0001");

  // Its memory is intact; and the previous checkpoint still restores.
  go("m");
  EXPECT_EQ(wait_exit(run, 60), 0);
  EXPECT_EQ(count("m", "PASS"), 1) << log("m");
  pid_t restore = spawn({"restore", "m", "--from", "0001", "--force"});
  EXPECT_EQ(wait_exit(restore, 60), 0);
  EXPECT_EQ(count("m", "PASS"), 1) << log("m");  // the log is back at 0001's size, then PASS once more
  EXPECT_EQ(count("m", "FAIL"), 0) << log("m");
}

// cryo killed while it streams the store's copy to CRIU (store/stream.h):
// CRIU's reads fail, it kills what it restored, nothing of the job runs,
// and the checkpoint restores afterwards, the counter going on from it.
TEST_F(CryoTest, KilledStreamingRestoreLosesNothing) {
  ASSERT_TRUE(stopped_counter("s"));
  std::string before = log("s");
  std::string err;
  EXPECT_EQ(cryo({"restore", "s", "--durable"}, nullptr, &err, {{"CRYO_FAULT", "stream.read"}}), 128 + SIGKILL) << err;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(log("s"), before) << "the job ran";
  for (const auto& p : fs::directory_iterator("/proc")) {
    std::string cmd;
    if (read_text(p.path().string() + "/cmdline", &cmd)) {
      EXPECT_EQ(cmd.find(go_file("s")), std::string::npos) << "left running: " << p.path();
    }
  }
  EXPECT_EQ(status("s")["state"], "stopped");
  restore_ticking("s", 5, {"--durable"});
}

INSTANTIATE_TEST_SUITE_P(AtEachPhase, FaultTest,
                         ::testing::Values("checkpoint.before_dump", "checkpoint.post_dump", "checkpoint.after_dump",
                                           "flush.chunks", "flush.before_sync", "store.before_manifest",
                                           "store.before_rename", "store.before_latest", "flush.before_retention"),
                         DottedParamName());

}  // namespace
}  // namespace cryo::test
