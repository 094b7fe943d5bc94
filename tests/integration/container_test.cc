// Jobs in containers, on the real engines: Podman and Docker through their
// own checkpoints, Apptainer images run by cryo itself.  Each holds 512 MiB
// and a counter; checkpointed, killed and restored into a new container,
// the counter goes on from the checkpoint, each line once, and the memory
// keeps its checksum.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <thread>

#include "containers.h"
#include "harness.h"

namespace cryo::test {
namespace {

namespace fs = std::filesystem;

class ContainerTest : public CryoTest {
 public:
  void SetUp() override {
    CryoTest::SetUp();
    if (IsSkipped()) return;
    rootfs_ = build_rootfs(work_);
    gohost_ = work_ + "/gohost";
    fs::create_directories(gohost_);
  }
  void TearDown() override {
    for (const auto& j : jobs_) sh("podman rm -f cryo-" + j + " >/dev/null 2>&1");
    if (docker_) {
      docker_.reset();
      ::unsetenv("DOCKER_HOST");
    }
    if (!podman_image_.empty()) sh("podman rmi -f " + podman_image_ + " >/dev/null 2>&1");
    CryoTest::TearDown();
  }

  void go_in() { std::ofstream(gohost_ + "/go") << "go\n"; }
  std::string checksum(const std::string& job, const std::string& word) {
    std::string l = log(job);
    auto p = l.find(word + " checksum=");
    return p == std::string::npos ? "" : l.substr(p + word.size() + 10, 16);
  }

  // The acceptance: run, checkpoint while it runs on, kill the container,
  // restore into a new one.
  void continues_after_kill(const std::vector<std::string>& engine_args, const std::function<void()>& kill_job) {
    std::vector<std::string> args{"run", "--name", "c"};
    args.insert(args.end(), engine_args.begin(), engine_args.end());
    args.insert(args.end(), {"--", "/bin/ticker", "/go/go", "512"});
    pid_t run = spawn(args);
    ASSERT_TRUE(wait_for("c", "tick 10", 120)) << log("c");
    ASSERT_EQ(checkpoint("c"), "0001");
    long at = last("c", "tick");
    ASSERT_TRUE(wait_for("c", "tick " + std::to_string(at + 20), 60));  // runs on, appending
    kill_job();
    EXPECT_EQ(wait_exit(run, 60), 128 + SIGKILL);
    pid_t restore = spawn({"restore", "c"});
    ASSERT_TRUE(wait_for("c", "tick " + std::to_string(at + 40), 120)) << log("c");
    go_in();
    EXPECT_EQ(wait_exit(restore, 60), 0);
    EXPECT_EQ(count("c", "PASS"), 1) << log("c").substr(log("c").size() > 400 ? log("c").size() - 400 : 0);
    EXPECT_EQ(count("c", "READY"), 1);
    expect_sequence("c", "tick");
    EXPECT_FALSE(checksum("c", "READY").empty());
    EXPECT_EQ(checksum("c", "PASS"), checksum("c", "READY"));
    std::string events;
    read_text(store_ + "/c/cryo.log", &events);
    EXPECT_NE(events.find("restored from checkpoint 0001"), std::string::npos) << events;
  }

  std::string rootfs_, gohost_, podman_image_;
  std::unique_ptr<DockerDaemon> docker_;
};

bool have(const std::string& cmd) {
  int rc;
  sh("command -v " + cmd + " >/dev/null", &rc);
  return rc == 0;
}

TEST_F(ContainerTest, PodmanJobContinuesInANewContainer) {
  if (!have("podman")) GTEST_SKIP() << "needs podman and runc (scripts/setup.sh installs them)";
  podman_image_ = podman_image(rootfs_, "ticker-" + std::to_string(::getpid()));
  continues_after_kill({"--podman", podman_image_, "--engine-opt=--network=none", "--engine-opt=-v",
                        "--engine-opt=" + gohost_ + ":/go"},
                       [&] { sh("podman kill cryo-c >/dev/null 2>&1"); });
}

TEST_F(ContainerTest, DockerJobContinuesInANewContainer) {
  if (!have("dockerd")) GTEST_SKIP() << "needs Debian's docker.io (scripts/setup.sh installs it)";
  docker_ = std::make_unique<DockerDaemon>(work_);
  std::string dlog;
  read_text(docker_->log(), &dlog);
  ASSERT_TRUE(docker_->up()) << "dockerd did not start: " << dlog;
  ::setenv("DOCKER_HOST", docker_->host().c_str(), 1);
  std::string image = docker_->image(rootfs_, "ticker");
  // containerd leaves the restored images in /tmp/ctrd-checkpoint*; cryo
  // removes the copy its restore left.
  auto leftovers = [] {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator("/tmp"))
      if (e.path().filename().string().rfind("ctrd-checkpoint", 0) == 0) out.insert(e.path());
    return out;
  };
  auto before = leftovers();
  continues_after_kill({"--docker", image, "--engine-opt=--network=none", "--engine-opt=-v",
                        "--engine-opt=" + gohost_ + ":/go"},
                       [&] { sh("docker kill cryo-c >/dev/null 2>&1"); });
  EXPECT_EQ(leftovers(), before) << "a copy of the checkpoint's images is left in /tmp";
}

TEST_F(ContainerTest, ApptainerImageContinuesAfterKill) {
  std::string sif = sif_image(rootfs_, work_);
  if (sif.empty()) GTEST_SKIP() << "needs Apptainer (scripts/install-apptainer.sh)";
  continues_after_kill({"--apptainer", sif, "--engine-opt=--bind=" + gohost_ + ":/go"},
                       [&] { ::kill(job_pid("c"), SIGKILL); });
  // The SIF image was unpacked once, into the job's directory.
  EXPECT_TRUE(fs::exists(store_ + "/c/rootfs/bin/ticker"));
}

// An echo server on the host, for one connection.
class EchoServer {
 public:
  EchoServer() {
    ls_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(ls_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::bind(ls_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(ls_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(ls_, 1);
    thread_ = std::thread([this] {
      pollfd p{ls_, POLLIN, 0};
      while (!stop_ && ::poll(&p, 1, 100) == 0) {
      }
      if (stop_) return;
      int c = ::accept(ls_, nullptr, nullptr);
      char buf[4096];
      for (;;) {
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 100) == 0) {
          if (stop_) break;
          continue;
        }
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        if (::write(c, buf, static_cast<size_t>(n)) != n) break;
      }
      closed_ = true;
      ::close(c);
    });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    ::close(ls_);
  }
  int port() const { return port_; }
  bool closed() const { return closed_; }

 private:
  int ls_, port_ = 0;
  std::atomic<bool> stop_{false}, closed_{false};
  std::thread thread_;
};

// A container with an established TCP connection to the host is stopped
// at a checkpoint and restored: the connection goes on, and the host drops
// the container's traffic only in between.
TEST_F(ContainerTest, PodmanTcpConnectionSurvivesAStop) {
  if (!have("podman")) GTEST_SKIP() << "needs podman and runc (scripts/setup.sh installs them)";
  podman_image_ = podman_image(rootfs_, "tcp-" + std::to_string(::getpid()));
  std::string gateway = sh("podman network inspect podman --format '{{range .Subnets}}{{.Gateway}}{{end}}'");
  while (!gateway.empty() && gateway.back() == '\n') gateway.pop_back();
  ASSERT_FALSE(gateway.empty()) << "podman's default network has no gateway";
  EchoServer echo;
  pid_t run = spawn({"run", "--name", "tcp", "--tcp-established", "--podman", podman_image_, "--engine-opt=-v",
                     "--engine-opt=" + gohost_ + ":/go", "--", "/bin/tcppeer", "/go/go", gateway,
                     std::to_string(echo.port())});
  ASSERT_TRUE(wait_for("tcp", "tick 10", 60)) << log("tcp");
  ASSERT_EQ(checkpoint("tcp", {"--stop"}), "0001");
  EXPECT_EQ(wait_exit(run), 75);
  EXPECT_NE(sh("iptables -S").find("cryo: tcp is checkpointed"), std::string::npos) << "the traffic is not blocked";
  long before = last("tcp", "tick");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  pid_t restore = spawn({"restore", "tcp"});
  ASSERT_TRUE(wait_for("tcp", "tick " + std::to_string(before + 20), 60)) << log("tcp");
  EXPECT_EQ(sh("iptables -S").find("cryo: tcp is checkpointed"), std::string::npos) << "the block stayed";
  EXPECT_FALSE(echo.closed()) << "the host's end of the connection was closed";
  go_in();
  EXPECT_EQ(wait_exit(restore), 0);
  EXPECT_EQ(count("tcp", "PASS"), 1) << log("tcp");
  EXPECT_EQ(count("tcp", "FAIL"), 0) << log("tcp");
  expect_sequence("tcp", "tick");
}

}  // namespace
}  // namespace cryo::test
