// MPI jobs on one node, on the real Open MPI, MPICH and HPL (Debian's
// hpcc): checkpoint the launcher and every rank as one, kill, restore.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <random>
#include <thread>

#include "harness.h"

namespace cryo::test {
namespace {

const char* kOmpiRoot = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";

class MpiTest : public CryoTest {
 public:
  // Until the job's supervisor answers on its control socket.
  bool wait_running(const std::string& job) {
    for (int i = 0; i < 600; i++) {
      std::string out;
      if (cryo({"status", job, "--json"}, &out) == 0 &&
          nlohmann::json::parse(out, nullptr, false).value("state", "") == "running")
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::vector<std::string> ring(const std::string& mpi, const std::string& rounds, const std::string& ms) {
    if (mpi == "openmpi") return {"mpirun", "-np", "2", prog("ring_openmpi"), rounds, ms};
    return {"mpiexec.mpich", "-n", "2", prog("ring_mpich"), rounds, ms};
  }
  // The same ring run directly, uninterrupted and unpaced.
  std::string reference(const std::string& mpi, const std::string& rounds) {
    std::string cmd = kOmpiRoot;
    for (const auto& a : ring(mpi, rounds, "0")) cmd += a + " ";
    return sh(cmd + "2>/dev/null");
  }

  // Runs the ring under cryo and, at 5 random moments, checkpoints it (the
  // job keeps running), kills it, and restores it.  The output must be
  // that of an uninterrupted run, each line once.
  void ring_survives_kills(const std::string& mpi) {
    const std::string rounds = "120";
    std::string expect = reference(mpi, rounds);
    ASSERT_NE(expect.find("RESULT rank 1"), std::string::npos) << expect;
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> pause_ms(300, 1500);
    std::vector<std::string> args = {"run", "--name", "ring", "--"};
    for (const auto& a : ring(mpi, rounds, "100")) args.push_back(a);
    pid_t sup = spawn(args);
    ASSERT_TRUE(wait_for("ring", "round 3", 60)) << log("ring");
    for (int i = 1; i <= 5; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
      std::string id = checkpoint("ring");
      ASSERT_FALSE(id.empty());
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
      ::kill(job_pid("ring"), SIGKILL);
      EXPECT_EQ(wait_exit(sup), 128 + SIGKILL);
      sup = spawn({"restore", "ring"});
      ASSERT_TRUE(wait_running("ring")) << "restore " << i << " did not come up";
    }
    EXPECT_EQ(wait_exit(sup, 120), 0);
    EXPECT_EQ(log("ring"), expect);
    EXPECT_EQ(status("ring").value("restores", 0), 5);
  }
};

TEST_F(MpiTest, OpenMpiRingIdenticalAfterFiveKillsAndRestores) { ring_survives_kills("openmpi"); }

TEST_F(MpiTest, MpichRingIdenticalAfterFiveKillsAndRestores) { ring_survives_kills("mpich"); }

// Two Open MPI jobs (both launchers are PID 1 of their namespace, so MPI
// gives them the same job ID) are checkpointed at the same moment, stopped,
// and restored at the same moment; neither disturbs the other.
TEST_F(MpiTest, TwoJobsCheckpointedAndRestoredAtOnce) {
  const std::string rounds = "80";
  std::string expect = reference("openmpi", rounds);
  std::vector<pid_t> sups;
  for (const char* name : {"a", "b"}) {
    std::vector<std::string> args = {"run", "--name", name, "--"};
    for (const auto& a : ring("openmpi", rounds, "100")) args.push_back(a);
    sups.push_back(spawn(args));
  }
  for (const char* name : {"a", "b"}) ASSERT_TRUE(wait_for(name, "round 10", 60)) << log(name);
  std::string ids[2];
  std::thread ta([&] { ids[0] = checkpoint("a", {"--stop"}); });
  std::thread tb([&] { ids[1] = checkpoint("b", {"--stop"}); });
  ta.join();
  tb.join();
  EXPECT_EQ(ids[0], "0001");
  EXPECT_EQ(ids[1], "0001");
  for (pid_t p : sups) EXPECT_EQ(wait_exit(p), 75);
  pid_t ra = spawn({"restore", "a"}), rb = spawn({"restore", "b"});
  EXPECT_EQ(wait_exit(ra, 120), 0);
  EXPECT_EQ(wait_exit(rb, 120), 0);
  EXPECT_EQ(log("a"), expect);
  EXPECT_EQ(log("b"), expect);
}

// The paper's experiment: HPL (hpcc) under Open MPI with 2 ranks is
// checkpointed in the middle of its HPL phase, killed and restored; the
// residual check passes with the same residual as an uninterrupted run.
TEST_F(MpiTest, HplResidualUnchangedAfterCheckpointMidHpl) {
  // A 1 x 2 grid, N = 6000: HPL runs about 7 s here, after the other HPCC tests.
  std::ifstream in("/usr/share/doc/hpcc/examples/_hpccinf.txt");
  ASSERT_TRUE(in) << "hpcc's example input is missing; install Debian's hpcc";
  std::string line, text;
  int n = 0;
  while (std::getline(in, line)) {
    n++;
    if (n == 6) line = "6000         Ns";
    if (n == 11) line = "1            Ps";
    if (n == 12) line = "2            Qs";
    text += line + "\n";
  }
  std::string ref_dir = work_ + "/ref", job_dir = work_ + "/job";
  for (const auto& d : {ref_dir, job_dir}) {
    std::filesystem::create_directories(d);
    std::ofstream(d + "/hpccinf.txt") << text;
  }
  sh("cd " + ref_dir + " && " + kOmpiRoot + "mpirun -np 2 hpcc >/dev/null 2>&1");
  auto residual = [](const std::string& dir) {
    std::string out;
    read_text(dir + "/hpccoutf.txt", &out);
    auto p = out.find("||Ax-b||_oo/(eps*(||A||_oo*||x||_oo+||b||_oo)*N)=");
    return p == std::string::npos ? std::string("none") : out.substr(p, out.find('\n', p) - p);
  };
  std::string expect = residual(ref_dir);
  ASSERT_NE(expect.find("PASSED"), std::string::npos) << expect;

  std::filesystem::current_path(job_dir);
  pid_t sup = spawn({"run", "--name", "hpl", "--", "mpirun", "-np", "2", "hpcc"});
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (std::chrono::steady_clock::now() < deadline &&
         (!read_text(job_dir + "/hpccoutf.txt", &out) || out.find("Begin of HPL section") == std::string::npos))
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_NE(out.find("Begin of HPL section"), std::string::npos) << "HPL never started";
  std::this_thread::sleep_for(std::chrono::seconds(2));  // well into the factorization
  std::string id = checkpoint("hpl");
  ASSERT_EQ(id, "0001");
  read_text(job_dir + "/hpccoutf.txt", &out);
  ASSERT_EQ(out.find("End of HPL section"), std::string::npos) << "HPL ended before the checkpoint";
  ::kill(job_pid("hpl"), SIGKILL);
  wait_exit(sup);

  pid_t restored = spawn({"restore", "hpl"});
  EXPECT_EQ(wait_exit(restored, 180), 0);
  EXPECT_EQ(residual(job_dir), expect);
  read_text(job_dir + "/hpccoutf.txt", &out);
  EXPECT_NE(out.find("End of HPC Challenge tests."), std::string::npos);
}

// A real MPICH application from Debian: ScaLAPACK's LU test driver (xdlu,
// scalapack-mpi-test's MPICH build), 2 ranks, 238 factorizations and
// solves, stopped at a checkpoint in the middle and restored.
// Every test it prints (sizes, blocking, grid, PASSED) is that of an
// uninterrupted run.  It runs in the job's own /proc and /dev/shm, where
// UCX's shared memory works as it does outside cryo.
TEST_F(MpiTest, ScalapackUnderMpichContinuesFromAStop) {
  const std::string xdlu = "/usr/lib/x86_64-linux-gnu/scalapack/mpich-tests/xdlu";
  ASSERT_TRUE(std::filesystem::exists(xdlu)) << "install Debian's scalapack-mpi-test";
  const char* input =
      "'SCALAPACK, LU factorization input file'\n'MPI Machine'\n'LU.out' output file name\n6 device out\n"
      "8 number of problems sizes\n700 740 780 820 860 900 720 800 values of M\n"
      "700 740 780 820 860 900 720 800 values of N\n4 number of NB's\n8 16 32 64 values of NB\n"
      "4 number of NRHS's\n1 2 4 8 values of NRHS\n1 Number of NBRHS's\n1 values of NBRHS\n"
      "2 number of process grids\n1 2 values of P\n2 1 values of Q\n1.0 threshold\n"
      "F (T or F) Test Cond. Est. and Iter. Ref. Routines\n";
  std::string ref_dir = work_ + "/ref", job_dir = work_ + "/job";
  for (const auto& d : {ref_dir, job_dir}) {
    std::filesystem::create_directories(d);
    std::ofstream(d + "/LU.dat") << input;
  }
  // The tests' lines without their timings.
  auto tests = [](const std::string& out) {
    std::istringstream lines(out);
    std::string line, kept;
    while (std::getline(lines, line)) {
      std::istringstream w(line);
      std::vector<std::string> f{std::istream_iterator<std::string>(w), {}};
      if (f.size() == 12 && f[0] == "WALL") kept += f[1] + " " + f[2] + " " + f[3] + " " + f[4] + " " + f[5] + " " +
                                                  f[6] + " " + f[7] + " " + f[11] + "\n";
      if (line.find("tests completed") != std::string::npos) kept += line + "\n";
    }
    return kept;
  };
  std::string expect = tests(sh("cd " + ref_dir + " && mpiexec.mpich -n 2 " + xdlu + " 2>&1"));
  ASSERT_NE(expect.find("238 tests completed and passed"), std::string::npos) << expect;

  std::filesystem::current_path(job_dir);
  pid_t sup = spawn({"run", "--name", "lu", "--", "mpiexec.mpich", "-n", "2", xdlu});
  ASSERT_TRUE(wait_for("lu", "PASSED", 60, 60)) << log("lu");
  ASSERT_EQ(checkpoint("lu", {"--stop"}), "0001");
  EXPECT_EQ(wait_exit(sup), 75);
  EXPECT_EQ(log("lu").find("tests completed"), std::string::npos) << "xdlu ended before the checkpoint";
  pid_t restored = spawn({"restore", "lu"});
  EXPECT_EQ(wait_exit(restored, 180), 0);
  EXPECT_EQ(tests(log("lu")), expect);
}

}  // namespace
}  // namespace cryo::test
