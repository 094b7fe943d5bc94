// Multi-node jobs (src/coord/): an Open MPI job across two parts, each on
// its own agent, in network namespaces on a bridge with addresses from
// 192.0.2.0/24 (the "nodes" of these tests), checkpointed as one cut (twice,
// keeping one) and restored onto the agents in the other order, one part from its fast
// copy and one, whose fast copy is damaged, from the store; and agents
// killed in every phase of a checkpoint; 'cryo status' answering while a
// checkpoint waits for an agent.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "harness.h"
#include "param_name.h"

namespace cryo::test {
namespace {

namespace fs = std::filesystem;

class MultiNodeTest : public CryoTest {
 public:
  void SetUp() override {
    CryoTest::SetUp();
    if (IsSkipped()) return;
    if (sh("command -v mpirun.openmpi").empty()) GTEST_SKIP() << "needs Open MPI (openmpi-bin)";
    bridge_ = "cit" + std::to_string(::getpid() % 100000);
    int rc;
    sh("ip link add " + bridge_ + " type bridge && ip link set " + bridge_ + " up", &rc);
    ASSERT_EQ(rc, 0) << "cannot create the bridge " << bridge_;
    // A Docker daemon (another test's) leaves FORWARD dropping bridged traffic.
    sh("iptables -w -I FORWARD -i " + bridge_ + " -o " + bridge_ + " -j ACCEPT");
    ref_ = sh(std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 ") +
              prog("ring_openmpi") + " 80 0 2>/dev/null");
    ASSERT_NE(ref_.find("RESULT rank 1"), std::string::npos) << ref_;
  }

  void TearDown() override {
    if (bridge_.empty()) return CryoTest::TearDown();
    CryoTest::TearDown();  // the jobs' supervisors and the agents (by PID)
    // Parts an agent left behind when it was killed: by their namespaces.
    for (const auto& ns : fs::directory_iterator("/run/netns")) {
      std::string n = ns.path().filename();
      if (n.rfind("cryo-", 0) != 0) continue;
      for (const auto& j : jobs_)
        if (n.rfind("cryo-" + j + "-p", 0) == 0) {
          sh("ip netns pids " + n + " | xargs -r kill -9; ip netns del " + n + " 2>/dev/null");
        }
    }
    sh("iptables -w -D FORWARD -i " + bridge_ + " -o " + bridge_ + " -j ACCEPT; ip link del " + bridge_ + " 2>/dev/null");
  }

  // Starts an agent; returns its IP:PORT.
  std::string agent(const std::string& node, const std::map<std::string, std::string>& env = {}) {
    std::string announce = work_ + "/agent-" + node;
    fs::remove(announce);
    pid_t pid = spawn({"agent", "--listen", "127.0.0.1:0", "--node", node, "--announce", announce}, env);
    agents_[node] = pid;
    for (int i = 0; i < 200; i++) {
      std::string text;
      if (read_text(announce, &text) && !text.empty()) return text.substr(text.find(' ') + 1, text.find('\n') - text.find(' ') - 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ADD_FAILURE() << "agent " << node << " did not start";
    return "";
  }

  pid_t run(const std::string& job, const std::string& nodes, const std::string& keep = "0") {
    return spawn({"run", "--name", job, "--agents", nodes, "--bridge", bridge_, "--keep", keep, "--", "mpirun", "-np",
                  "2", "--map-by", "node", prog("ring_openmpi"), "80", "100"});
  }

  // The checkpoint ids in a job's or a part's directory.
  std::vector<std::string> checkpoints(const std::string& dir) {
    std::vector<std::string> ids;
    for (const auto& e : fs::directory_iterator(dir + "/checkpoints"))
      if (e.path().filename().string()[0] != '.') ids.push_back(e.path().filename());
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  std::string bridge_, ref_;
  std::map<std::string, pid_t> agents_;
};

TEST_F(MultiNodeTest, OpenMpiAcrossTwoNodesRestoredInTheOtherOrder) {
  std::string a = agent("a"), b = agent("b");
  pid_t sup = run("ring", a + "," + b, "1");
  ASSERT_TRUE(wait_for("ring", "round 15", 60)) << log("ring");
  ASSERT_EQ(checkpoint("ring"), "0001");
  ASSERT_EQ(checkpoint("ring"), "0002");
  // --keep 1: the job's first checkpoint is gone, and with it each part's.
  EXPECT_EQ(checkpoints(store_ + "/ring"), std::vector<std::string>{"0002"});
  for (const char* p : {"p0", "p1"})
    EXPECT_EQ(checkpoints(store_ + "/ring/parts/" + p), std::vector<std::string>{"0002"}) << p;
  long at = last("ring", "round");
  ASSERT_TRUE(wait_for("ring", "round " + std::to_string(at + 10), 60));
  // The coordinator dies: its agents end the parts, as a failure would.
  ::kill(sup, SIGKILL);
  wait_exit(sup);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // Part 1's fast copy is damaged in its memory pages (checked while CRIU
  // restores them): that part comes back from the store.
  int flipped = 0;
  for (const auto& e : fs::directory_iterator(fast_)) {
    if (e.path().filename().string().rfind("p1-", 0) != 0) continue;
    for (const auto& f : fs::recursive_directory_iterator(e.path()))
      if (f.path().filename().string().rfind("pages-", 0) == 0 && f.file_size() > 100) {
        flip_byte(f.path(), 100);
        flipped++;
      }
  }
  ASSERT_GT(flipped, 0) << "no fast copy of part 1 in " << fast_;
  // The dry run asks each agent to check its part on its node.
  std::string out;
  EXPECT_EQ(cryo({"restore", "ring", "--dry-run", "--json", "--agents", b + "," + a}, &out), 0) << out;
  auto dry = nlohmann::json::parse(out, nullptr, false);
  std::set<std::string> passed;
  if (dry.is_object())
    for (const auto& c : dry["checks"])
      if (c.value("result", "") == "pass") passed.insert(c.value("check", ""));
  for (const char* c : {"p0 key", "p0 files", "p0 mounts", "p0 network", "p1 cpu", "p1 memory", "p1 network"})
    EXPECT_TRUE(passed.count(c)) << c << " did not pass: " << out;
  pid_t restore = spawn({"restore", "ring", "--agents", b + "," + a});
  EXPECT_EQ(wait_exit(restore, 120), 0);
  EXPECT_EQ(log("ring"), ref_);
  std::string events;
  read_text(store_ + "/ring/cryo.log", &events);
  EXPECT_NE(events.find("retention (--keep 1) removed 0001"), std::string::npos) << events;
  EXPECT_NE(events.find("restored from checkpoint 0002"), std::string::npos) << events;
  EXPECT_NE(events.find("part 0 on " + b + ", part 1 on " + a), std::string::npos) << events;
  EXPECT_NE(events.find("warning: the fast copy of part 1"), std::string::npos) << events;
  EXPECT_EQ(events.find("warning: the fast copy of part 0"), std::string::npos) << events;
  auto s = status("ring");
  EXPECT_EQ(s["state"], "finished");
}

// The supervisor answers while a coordinated checkpoint waits for an agent
// (here one stopped with SIGSTOP): 'cryo status' says it is checkpointing,
// and once the agent goes on, the checkpoint completes and the job ends as
// an uninterrupted run.
TEST_F(MultiNodeTest, StatusAnswersWhileACheckpointWaitsForAnAgent) {
  std::string a = agent("a"), b = agent("b");
  pid_t sup = run("slow", a + "," + b);
  ASSERT_TRUE(wait_for("slow", "round 15", 60)) << log("slow");
  ::kill(agents_["b"], SIGSTOP);
  pid_t ck = spawn({"checkpoint", "slow", "--json", "--wait"});
  bool seen = false;
  for (int i = 0; i < 100 && !seen; i++) {
    seen = status("slow").value("state", "") == "checkpointing";
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(agents_["b"], SIGCONT);
  EXPECT_TRUE(seen) << "cryo status did not report the checkpoint while it ran";
  EXPECT_EQ(wait_exit(ck, 60), 0);
  EXPECT_EQ(wait_exit(sup, 120), 0);
  EXPECT_EQ(log("slow"), ref_);
  std::string events;
  read_text(store_ + "/slow/cryo.log", &events);
  EXPECT_NE(events.find("checkpoint 0001 committed: 2 parts"), std::string::npos) << events;
}

class AgentKilledTest : public MultiNodeTest, public ::testing::WithParamInterface<const char*> {};

// An agent killed in any phase of a checkpoint: the checkpoint fails, the
// job runs on to the end with the output of an uninterrupted run, and the
// previous checkpoint stays the latest and restores to the same end.
TEST_P(AgentKilledTest, JobRunsOnAndThePreviousCheckpointStays) {
  std::string arm = work_ + "/fault";
  std::ofstream(arm) << "";
  std::string a = agent("a"), b = agent("b", {{"CRYO_FAULT", "@" + arm}});
  pid_t sup = run("ring", a + "," + b);
  ASSERT_TRUE(wait_for("ring", "round 10", 60)) << log("ring");
  ASSERT_EQ(checkpoint("ring"), "0001");
  std::ofstream(arm) << GetParam() << "\n";
  std::string err;
  EXPECT_EQ(cryo({"checkpoint", "ring"}, nullptr, &err), 1);
  std::ofstream(arm) << "";
  EXPECT_NE(err.find("went away"), std::string::npos) << err;
  EXPECT_EQ(::waitpid(agents_["b"], nullptr, WNOHANG), agents_["b"]) << "the fault did not kill agent b";
  long at = last("ring", "round");
  ASSERT_TRUE(wait_for("ring", "round " + std::to_string(at + 10), 30)) << "the job stopped moving: " << log("ring");
  auto s = status("ring");
  EXPECT_EQ(s["latest"], "0001");
  EXPECT_EQ(cryo({"verify", "ring", "0001"}), 0);
  EXPECT_EQ(wait_exit(sup, 120), 0);
  EXPECT_EQ(log("ring"), ref_);
  // And 0001 still takes the job to the same end, on agents started anew.
  std::string b2 = agent("b2");
  pid_t restore = spawn({"restore", "ring", "--force", "--agents", a + "," + b2});
  EXPECT_EQ(wait_exit(restore, 120), 0);
  EXPECT_EQ(log("ring"), ref_);
}

INSTANTIATE_TEST_SUITE_P(InEachPhase, AgentKilledTest,
                         ::testing::Values("agent.prepare", "agent.post_dump", "agent.dump", "agent.commit"),
                         DottedParamName());

}  // namespace
}  // namespace cryo::test
