// Every checkpoint test program under every way a job comes back: so that
// no restore path is covered by one hand-written test alone.
//
// Each program prints "tick N" and checks its own state at every tick and
// at the end (tests/progs/common.h); a restore must be invisible to it.
// Each variant takes checkpoint 0001 after "tick 5", ends the job its way,
// restores it its way, and checks that the job went on from the
// checkpoint: every tick once and in order, and PASS.
#include <signal.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "harness.h"

namespace cryo::test {
namespace {

namespace fs = std::filesystem;

struct Program {
  const char* name;
  std::vector<std::string> (*args)(const CryoTest& t, const std::string& job);
  // Has a file open for writing: its restore lays the checkpoint out, to put
  // the file back from checked bytes, instead of streaming it.
  bool writes_files = false;
};

const Program kPrograms[] = {
    {"counter", [](const CryoTest& t, const std::string& job) { return std::vector<std::string>{t.prog("counter"), t.go_file(job)}; }},
    // SysV shared memory and a semaphore, in the job's IPC namespace.
    {"shmcounter", [](const CryoTest& t, const std::string& job) { return std::vector<std::string>{t.prog("shmcounter"), t.go_file(job)}; }},
    // /proc/self held open, /proc/<getpid()> read: the job's own /proc.
    {"procself", [](const CryoTest& t, const std::string& job) { return std::vector<std::string>{t.prog("procself"), t.go_file(job)}; }},
    // A POSIX lock, checked in /proc/locks.
    {"lockfile", [](const CryoTest& t, const std::string& job) {
       return std::vector<std::string>{t.prog("lockfile"), t.go_file(job), t.work_ + "/" + job + ".lock"};
     }, true},
    // A written file with a second name (a hard link).
    {"linkedfile", [](const CryoTest& t, const std::string& job) {
       return std::vector<std::string>{t.prog("linkedfile"), t.go_file(job), t.work_ + "/" + job + ".out"};
     }, true},
    // A tree of processes joined by pipes.
    {"pipetree", [](const CryoTest& t, const std::string& job) { return std::vector<std::string>{t.prog("pipetree"), t.go_file(job)}; }},
};

enum class Variant {
  fast,        // stopped at the checkpoint (--stop), restored from the node's fast copy
  streamed,    // stopped, restored from the store (--durable), its images streamed to CRIU
  laid_out,    // stopped, restored from the store without FUSE (CRYO_STREAM=0): files laid out first
  killed,      // ran on past the checkpoint and was killed (SIGKILL); restored from the store (the
               // node's fast copy of a job that no longer runs here is freed)
  other_tier,  // stopped, restored from the store by a cryo whose fast tier is another, the first
               // one out of sight (as on another node); then stopped at a checkpoint in the new
               // tier, and restored from that fast copy
};

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::fast: return "FastCopy";
    case Variant::streamed: return "StoreStreamed";
    case Variant::laid_out: return "StoreWithoutFuse";
    case Variant::killed: return "AfterKill";
    case Variant::other_tier: return "AnotherFastTier";
  }
  return "?";
}

// The word of each program's progress lines.
const char* word_of(const std::string& prog) { return prog == "pipetree" ? "round" : "tick"; }

class RestoreVariantTest : public CryoTest, public ::testing::WithParamInterface<std::tuple<int, Variant>> {};

TEST_P(RestoreVariantTest, TheJobGoesOnFromItsCheckpoint) {
  const Program& p = kPrograms[std::get<0>(GetParam())];
  Variant v = std::get<1>(GetParam());
  std::string job = p.name, word = word_of(p.name);
  std::vector<std::string> args{"run", "--name", job, "--"};
  for (const auto& a : p.args(*this, job)) args.push_back(a);
  pid_t run = spawn(args);
  ASSERT_TRUE(wait_for(job, word + " 5", 60)) << log(job);
  if (v == Variant::killed) {
    ASSERT_EQ(checkpoint(job), "0001");
    long at = last(job, word);
    ASSERT_TRUE(wait_for(job, word + " " + std::to_string(at + 10)));  // runs on past it
    ::kill(job_pid(job), SIGKILL);
    EXPECT_EQ(wait_exit(run), 128 + SIGKILL);
  } else {
    ASSERT_EQ(checkpoint(job, {"--stop"}), "0001");
    EXPECT_EQ(wait_exit(run), 75);
  }
  std::vector<std::string> extra;
  std::map<std::string, std::string> env{{"CRYO_LOG", "job:info"}};
  if (v == Variant::streamed || v == Variant::laid_out) extra.push_back("--durable");
  if (v == Variant::laid_out) env["CRYO_STREAM"] = "0";
  std::string away = fast_ + "-away", other = fast_ + "-other";
  struct PutBack {  // the first fast tier, for TearDown to clean
    const std::string &away, &fast, &other;
    ~PutBack() {
      std::error_code ec;
      if (fs::exists(away)) fs::rename(away, fast, ec);
      fs::remove_all(other, ec);
    }
  } put_back{away, fast_, other};
  if (v == Variant::other_tier) {
    fs::rename(fast_, away);
    fs::create_directories(other);
    env["CRYO_FAST_TIER"] = other;
  }
  auto restored_from = [&](int spawn_no) {
    std::string err;
    EXPECT_TRUE(read_text(work_ + "/spawn-" + std::to_string(spawn_no) + ".err", &err));
    bool from_fast = err.find("(fast copy)") != std::string::npos;
    bool streamed = err.find("streams from the store") != std::string::npos;
    return std::tuple{from_fast, streamed, err};
  };
  int spawn_no = spawns_;
  if (v == Variant::other_tier) {
    long at = last(job, word);
    pid_t restore = spawn({"restore", job}, env);
    ASSERT_TRUE(wait_for(job, word + " " + std::to_string(at + 10)));
    ASSERT_EQ(checkpoint(job, {"--stop"}), "0002");
    EXPECT_EQ(wait_exit(restore), 75);
    auto [from_fast, streamed, err] = restored_from(spawn_no);
    EXPECT_TRUE(!from_fast && streamed != p.writes_files) << err;
    spawn_no = spawns_;
  }
  restore_ticking(job, 10, extra, word, env);
  // Restored the way the variant says.
  auto [from_fast, streamed, err] = restored_from(spawn_no);
  switch (v) {
    case Variant::fast:
    case Variant::other_tier: EXPECT_TRUE(from_fast) << err; break;
    case Variant::streamed:
    case Variant::killed: EXPECT_TRUE(!from_fast && streamed != p.writes_files) << err; break;
    case Variant::laid_out: EXPECT_TRUE(!from_fast && !streamed) << err; break;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryProgram, RestoreVariantTest,
                         ::testing::Combine(::testing::Range(0, static_cast<int>(std::size(kPrograms))),
                                            ::testing::Values(Variant::fast, Variant::streamed, Variant::laid_out,
                                                              Variant::killed, Variant::other_tier)),
                         [](const ::testing::TestParamInfo<RestoreVariantTest::ParamType>& info) {
                           return std::string(kPrograms[std::get<0>(info.param)].name) + "_" +
                                  variant_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace cryo::test
