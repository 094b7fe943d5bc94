// Multi-node jobs (src/coord/): an Open MPI job across two parts, each on
// its own agent, in network namespaces on a bridge with addresses from
// 192.0.2.0/24 (the "nodes" of these tests), checkpointed as one cut (twice,
// keeping one) and restored onto the agents in the other order, one part from its fast
// copy and one, whose fast copy is damaged, from the store; and agents
// killed in every phase of a checkpoint; 'cryo status' answering while a
// checkpoint waits for an agent; an agent refusing whoever lacks the
// site's key.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "coord.pb.h"
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

// What someone who reaches an agent's port without the site's key can try
// (run as a user, who cannot read the key): a coordinator's Hello with
// key_id, then a request to start part 0 of a job in `store` on `bridge`
// that runs `command`, followed by `check` where the message's HMAC
// belongs.  Returns 0 if the agent closed the connection without a reply,
// 1 if it replied, and 2 and up if the attack could not be made; sets
// agent_key_id to the key id the agent's Hello named.
struct Attack {
  std::string key_id, check, store, bridge;
  std::vector<std::string> command;
};
int attack_agent(const std::string& address, const Attack& attack, std::string* agent_key_id) {
  int out[2];
  if (::pipe(out) < 0) return 2;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(out[0]);
    passwd* nobody = ::getpwnam("nobody");
    if (!nobody || ::setgroups(0, nullptr) < 0 || ::setgid(nobody->pw_gid) < 0 || ::setuid(nobody->pw_uid) < 0)
      ::_exit(3);
    if (::open("/etc/cryo/key", O_RDONLY) >= 0) ::_exit(4);  // she cannot read the key
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.find(':') + 1))));
    ::inet_pton(AF_INET, address.substr(0, address.find(':')).c_str(), &a.sin_addr);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) ::_exit(5);
    auto frame = [&](const std::string& body) {
      uint32_t len = htonl(static_cast<uint32_t>(body.size()));
      std::string f(reinterpret_cast<const char*>(&len), 4);
      (void)::send(s, (f + body).data(), f.size() + body.size(), MSG_NOSIGNAL);
    };
    coord::Envelope hello;
    hello.mutable_hello()->set_version(2);
    hello.mutable_hello()->set_nonce(std::string(32, 'n'));
    hello.mutable_hello()->set_key_id(attack.key_id);
    frame(hello.SerializeAsString());
    uint32_t len = 0;
    if (::recv(s, &len, 4, MSG_WAITALL) != 4) ::_exit(6);
    std::string body(ntohl(len), '\0');
    if (::recv(s, body.data(), body.size(), MSG_WAITALL) != static_cast<ssize_t>(body.size())) ::_exit(6);
    coord::Envelope answer;
    if (!answer.ParseFromString(body)) ::_exit(7);
    (void)!::write(out[1], answer.hello().key_id().data(), answer.hello().key_id().size());
    coord::Envelope req;
    req.mutable_request()->set_seq(1);
    auto* start = req.mutable_request()->mutable_start();
    auto* part = start->mutable_part();
    part->set_job("evil");
    part->set_index(0);
    part->set_store(attack.store);
    part->set_address("192.0.2.99/24");
    part->set_bridge(attack.bridge);
    for (const auto& w : attack.command) start->add_command(w);
    frame(req.SerializeAsString() + attack.check);
    // The agent answers a request it acts on; a refused one closes the connection.
    char c;
    ::_exit(::recv(s, &c, 1, 0) > 0 ? 1 : 0);
  }
  ::close(out[1]);
  char buf[64];
  ssize_t n = ::read(out[0], buf, sizeof buf);
  ::close(out[0]);
  if (agent_key_id && n > 0) agent_key_id->assign(buf, static_cast<size_t>(n));
  int status;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

// An agent runs what it is asked as root, so it serves only a coordinator
// that proves it holds the site's key.  A user on the cluster, who cannot
// read the key, reaches an agent's port: with no key id, then with the
// agent's own key id (it says it in its Hello) and a request to run a
// command whose check she cannot compute, then with no check at all.
// Each time the agent closes the connection without acting, and says so;
// the command never runs.  A coordinator whose node holds another key is
// refused with both keys named.  The agent still serves the real
// coordinator: a job across it and another agent ends as an uninterrupted
// run.
TEST_F(MultiNodeTest, AnAgentServesOnlyHoldersOfTheSiteKey) {
  std::string a = agent("a"), b = agent("b");
  std::string marker = work_ + "/run-by-the-agent";
  Attack attack{"", "", store_, bridge_, {"/bin/sh", "-c", "touch " + marker}};
  std::string key_id;
  EXPECT_EQ(attack_agent(a, attack, &key_id), 0);
  ASSERT_EQ(key_id.size(), 16u) << "the agent's Hello named no key";
  attack.key_id = key_id;
  attack.check = std::string(64, '0');
  EXPECT_EQ(attack_agent(a, attack, nullptr), 0);
  attack.check = "";
  EXPECT_EQ(attack_agent(a, attack, nullptr), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(fs::exists(marker)) << "the agent ran what a user without the key asked";
  std::string said;
  for (const auto& e : fs::directory_iterator(work_))
    if (e.path().extension() == ".err") {
      std::string t;
      read_text(e.path(), &t);
      said += t;
    }
  EXPECT_NE(said.find("refused: a coordinator from 127.0.0.1 holds key (none)"), std::string::npos) << said;
  EXPECT_NE(said.find("refused a coordinator: a coordination message fails its check"), std::string::npos) << said;

  // A coordinator on a node with another key.
  std::string other = work_ + "/other-key";
  std::string out, err;
  EXPECT_NE(cryo({"run", "--name", "otherkey", "--agents", a + "," + b, "--bridge", bridge_, "--", "true"}, &out, &err,
                 {{"CRYO_KEY", other}}),
            0);
  EXPECT_NE(err.find("the agent at " + a + " holds key " + key_id), std::string::npos) << err;
  EXPECT_NE(err.find("copy"), std::string::npos) << err;

  pid_t sup = run("ring", a + "," + b);
  EXPECT_EQ(wait_exit(sup, 120), 0);
  EXPECT_EQ(log("ring"), ref_);
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
