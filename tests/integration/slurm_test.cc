// cryo under a real Slurm cluster on this machine (scripts/slurm-cluster.sh:
// munged, slurmctld, two slurmd), with real time limits, warning signals
// and requeues.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <thread>

#include "containers.h"
#include "harness.h"
#include "slurm_cluster.h"

namespace cryo::test {
namespace {

class SlurmTest : public CryoTest {
 public:
  void SetUp() override {
    CryoTest::SetUp();
    if (IsSkipped()) return;
    cluster_ = work_ + "/slurm";
    ::chmod(work_.c_str(), 0711);  // munged runs as the munge user, below it
    std::string out;
    ASSERT_TRUE(slurm_.up(cluster_, 26817, 2, &out)) << out;
    ::setenv("CRYO_STORE", store_.c_str(), 1);
    ::setenv("CRYO_FAST_TIER", fast_.c_str(), 1);
  }

  void TearDown() override {
    for (const auto& j : jobs_) sh("podman rm -f cryo-" + j + " >/dev/null 2>&1");
    if (jobs_cleanup_) jobs_cleanup_();
    slurm_.down(slurm_jobs_);
    CryoTest::TearDown();
  }

  // Submits with 'cryo sbatch'; returns the Slurm job id.
  std::string submit(const std::vector<std::string>& args) {
    std::string id = sbatch(
        [&](const std::vector<std::string>& a, std::string* out, std::string* err) {
          return cryo(a, out, err, {{"SLURM_CONF", cluster_ + "/slurm.conf"}});
        },
        args, slurm_jobs_);
    jobs_.push_back("slurm-" + id);
    return id;
  }

  // Waits until the cryo.log in job directory `dir` holds `text` `times` times.
  bool wait_event(const std::string& dir, const std::string& text, double timeout, int times = 1) {
    return wait_for_text(dir + "/cryo.log", text, timeout, times);
  }

  // What an uninterrupted run of the solver prints (its pace does not change its output).
  std::string reference(const std::string& steps) { return sh(prog("solver") + " " + steps + " 0"); }

  // Signals cryo in the batch script, the way 'scancel --signal' does for a user.
  void signal_batch(const std::string& id, const std::string& sig) {
    int rc;
    std::string out = sh("scancel -b -s " + sig + " " + id + " 2>&1", &rc);
    ASSERT_EQ(rc, 0) << out;
  }

  // Runs the solver as a Slurm job, calls interrupt() once it runs, and
  // expects cryo to take `signal` as the end of the allocation: checkpoint,
  // requeue, restore, and the output of an uninterrupted run.
  void expect_requeued_once(const std::vector<std::string>& sbatch_args, const std::string& signal,
                            const std::function<void(const std::string&)>& interrupt,
                            std::vector<std::string> command = {}, std::string expect = "") {
    if (command.empty()) {
      command = {prog("solver"), "80", "100"};
      expect = reference("80");
    }
    std::string out = work_ + "/slurm.out";
    std::vector<std::string> args = sbatch_args;
    for (const auto& a : {std::string("-o"), out, std::string("-e"), work_ + "/slurm.err", std::string("--")})
      args.push_back(a);
    args.insert(args.end(), command.begin(), command.end());
    std::string id = submit(args);
    std::string dir = store_ + "/slurm-" + id;
    ASSERT_TRUE(wait_event(dir, "started in Slurm job", 30));
    std::this_thread::sleep_for(std::chrono::seconds(2));
    interrupt(id);
    ASSERT_TRUE(wait_event(dir, "received " + signal + " from Slurm", 30));
    ASSERT_TRUE(wait_event(dir, "restored from checkpoint 0001", 60));
    ASSERT_TRUE(wait_slurm_gone(id, 60));
    std::string got;
    read_text(out, &got);
    EXPECT_EQ(got, expect);
  }

  std::string cluster_;
  SlurmCluster slurm_;
  std::vector<std::string> slurm_jobs_;
  std::function<void()> jobs_cleanup_;
};

// The acceptance test: a computation that needs several allocations, with a
// one-minute time limit and the warning 20 s before it, finishes with output
// identical to an uninterrupted run, each line once, both in the Slurm output
// file and in the job's log; its result file on the shared store likewise.
TEST_F(SlurmTest, TimeLimitedJobContinuesAcrossRequeuesUntilDone) {
  const std::string steps = "400";  // 400 x 250 ms: at least 3 allocations of at most 40 s
  std::string expect = reference(steps);
  ASSERT_NE(expect.find("RESULT "), std::string::npos);
  std::string out = work_ + "/slurm.out", err = work_ + "/slurm.err", result = store_ + "/result.txt";
  // sbatch's options all as --name=value: only "--" tells them from the command.
  std::string id = submit({"--margin", "20s", "--time=1", "--output=" + out, "--error=" + err, "--", prog("solver"), steps,
                           "250", result});
  std::string job = "slurm-" + id;
  ASSERT_TRUE(wait_slurm_gone(id, 420)) << "still " << slurm_state(id) << " after 7 minutes";

  std::string got, errors, file;
  read_text(out, &got);
  read_text(err, &errors);
  read_text(result, &file);
  EXPECT_EQ(got, expect) << "the Slurm output file differs from an uninterrupted run; cryo said:\n" << errors;
  // Each allocation's end freed the fast copy it left: the next one read the store.
  EXPECT_EQ(errors.find("(fast copy)"), std::string::npos) << errors;
  EXPECT_EQ(log(job), expect);
  EXPECT_EQ(file, expect) << "the result file on the store differs";

  auto st = status(job);
  EXPECT_EQ(st.value("state", ""), "finished");
  EXPECT_EQ(st.value("exit_code", -1), 0);
  EXPECT_EQ(st.value("slurm_job_id", ""), id);
  auto allocs = st.value("allocations", nlohmann::json::array());
  ASSERT_GE(allocs.size(), 3u) << errors;
  for (size_t i = 0; i < allocs.size(); i++) {
    EXPECT_EQ(allocs[i].value("restart", -1), static_cast<int>(i));
    if (i + 1 < allocs.size()) {
      EXPECT_NE(allocs[i].value("outcome", "").find("requeued"), std::string::npos) << allocs[i].dump();
      // The time limit's warning, not some other signal: the limit was near.
      double margin = allocs[i].value("margin_seconds", 0.0);
      EXPECT_GT(margin, 0) << allocs[i].dump();
      EXPECT_LE(margin, 60) << allocs[i].dump();
    }
  }
  EXPECT_EQ(allocs.back().value("outcome", ""), "finished with exit status 0");
  EXPECT_EQ(st.value("slurm_restarts", -1), static_cast<int>(allocs.size()) - 1);
  // Retention (--keep 2 under Slurm) has run.
  EXPECT_LE(st["checkpoints"].size(), 2u);

  std::string ls;
  ASSERT_EQ(cryo({"ls"}, &ls), 0);
  EXPECT_NE(ls.find(id + " r" + std::to_string(allocs.size() - 1)), std::string::npos) << ls;
}

// A checkpoint at the end of an allocation fails (the store is full): the
// previous checkpoint stays the latest, the log says so, and the next
// allocation continues from it.  Also a manual 'scancel -b -s USR1'.
TEST_F(SlurmTest, FailedCheckpointFallsBackToThePreviousOne) {
  std::string store = mount_tmpfs("size=48m");
  const std::string steps = "150";
  std::string expect = reference(steps);
  std::string out = work_ + "/slurm.out";
  std::vector<std::string> args = {"--store", store, "sbatch", "--json", "-o", out, "--", prog("solver"), steps, "100"};
  std::string sout, serr;
  ASSERT_EQ(cryo(args, &sout, &serr, {{"SLURM_CONF", cluster_ + "/slurm.conf"}}), 0) << serr;
  std::string id = nlohmann::json::parse(sout, nullptr, false).value("slurm_job_id", "");
  ASSERT_FALSE(id.empty()) << sout;
  slurm_jobs_.push_back(id);
  std::string job = "slurm-" + id, dir = store + "/" + job;
  auto events = [&] {
    std::string l;
    read_text(dir + "/cryo.log", &l);
    return l;
  };
  auto wait_in = [&](const std::string& text, double timeout, int times = 1) {
    return wait_event(dir, text, timeout, times);
  };

  auto slurm_out = [&] {
    std::string text;
    read_text(out, &text);
    return "Slurm says: " + slurm_state(id) + "\n" + text;
  };
  ASSERT_TRUE(wait_in("started in Slurm job", 60)) << slurm_out();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  signal_batch(id, "USR1");
  ASSERT_TRUE(wait_in("restored from checkpoint 0001", 60)) << events() << slurm_out();
  std::this_thread::sleep_for(std::chrono::seconds(2));

  // Fill the store; the next checkpoint cannot be written.
  sh("dd if=/dev/zero of=" + store + "/filler bs=1M 2>/dev/null");
  signal_batch(id, "USR1");
  ASSERT_TRUE(wait_in("checkpoint failed", 30)) << events();
  ASSERT_TRUE(wait_in("checkpoint 0001 stays the latest", 30)) << events();
  ASSERT_TRUE(wait_in("requeued; its next allocation restores checkpoint 0001", 30)) << events();
  ::unlink((store + "/filler").c_str());

  ASSERT_TRUE(wait_in("restored from checkpoint 0001", 60, 2)) << events();
  ASSERT_TRUE(wait_slurm_gone(id, 120));
  std::string got;
  read_text(dir + "/stdout.log", &got);
  EXPECT_EQ(got, expect) << events();
  EXPECT_NE(events().find("finished with exit status 0"), std::string::npos) << events();
  // The Slurm output file repeats what ran between 0001 and the failed
  // checkpoint (docs/slurm.md), but ends with the same result.
  EXPECT_NE(slurm_out().find(expect.substr(expect.find("RESULT "))), std::string::npos);
}

// SIGTERM with a grace time (preemption) checkpoints and requeues as well.
TEST_F(SlurmTest, TermCheckpointsAndRequeues) {
  expect_requeued_once({}, "SIGTERM", [&](const std::string& id) { signal_batch(id, "TERM"); });
}

// A real preemption: a job in the 'urgent' partition needs the node.  Slurm
// sends the job's warning signal (preempt_send_user_signal) and GraceTime;
// cryo checkpoints and requeues, and the job finishes after the urgent one.
TEST_F(SlurmTest, PreemptedJobContinuesAfterThePreemptor) {
  expect_requeued_once({"-c", "2", "-w", "n1"}, "SIGUSR1", [&](const std::string&) {
    int rc;
    std::string urgent = trim(sh("sbatch --parsable -p urgent -c 2 -w n1 -o /dev/null --wrap 'sleep 2' 2>&1", &rc));
    ASSERT_EQ(rc, 0) << urgent;
    slurm_jobs_.push_back(urgent);
  });
}

// An MPI job (Open MPI, 2 ranks) through a requeue: all its ranks stay on
// the node under cryo's init, even though Open MPI sees the allocation.
TEST_F(SlurmTest, MpiJobRequeuedAndRestored) {
  std::string expect = sh(std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 ") +
                          prog("ring_openmpi") + " 60 0 2>/dev/null");
  ASSERT_NE(expect.find("RESULT rank 1"), std::string::npos);
  expect_requeued_once({}, "SIGUSR1", [&](const std::string& id) { signal_batch(id, "USR1"); },
                       {"mpirun", "-np", "2", prog("ring_openmpi"), "60", "100"}, expect);
}

// Container jobs take the same way through a requeue: a Podman container
// (its engine's checkpoint), and an Apptainer image (run by cryo itself).
TEST_F(SlurmTest, PodmanJobRequeuedAndRestored) {
  if (sh("command -v podman").empty()) GTEST_SKIP() << "needs podman and runc (scripts/setup.sh installs them)";
  std::string image = podman_image(build_rootfs(work_), "solver-" + std::to_string(::getpid()));
  jobs_cleanup_ = [image] { sh("podman rmi -f " + image + " >/dev/null 2>&1"); };
  expect_requeued_once({"--podman", image, "--engine-opt=--network=none"}, "SIGUSR1",
                       [&](const std::string& id) { signal_batch(id, "USR1"); }, {"/bin/solver", "80", "100"},
                       reference("80"));
}

TEST_F(SlurmTest, ApptainerJobRequeuedAndRestored) {
  std::string sif = sif_image(build_rootfs(work_), work_);
  if (sif.empty()) GTEST_SKIP() << "needs Apptainer (scripts/install-apptainer.sh)";
  expect_requeued_once({"--apptainer", sif}, "SIGUSR1", [&](const std::string& id) { signal_batch(id, "USR1"); },
                       {"/bin/solver", "80", "100"}, reference("80"));
}

// A multi-node job (Open MPI across the two nodes of the allocation, an
// agent on each started with srun): the warning checkpoints every part,
// the job is requeued, and the next allocation restores it, its output
// that of an uninterrupted run.
TEST_F(SlurmTest, MultiNodeMpiJobRequeuedAndRestored) {
  std::string bridge = "cis" + std::to_string(::getpid() % 100000);
  int rc;
  sh("ip link add " + bridge + " type bridge && ip link set " + bridge + " up", &rc);
  ASSERT_EQ(rc, 0) << "cannot create the bridge";
  sh("iptables -w -I FORWARD -i " + bridge + " -o " + bridge + " -j ACCEPT");
  jobs_cleanup_ = [bridge] {
    sh("iptables -w -D FORWARD -i " + bridge + " -o " + bridge + " -j ACCEPT; ip link del " + bridge + " 2>/dev/null");
  };
  std::string expect = sh(std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 ") +
                          prog("ring_openmpi") + " 60 0 2>/dev/null");
  ASSERT_NE(expect.find("RESULT rank 1"), std::string::npos);
  expect_requeued_once({"--agents", "slurm", "--bridge", bridge, "-N", "2"}, "SIGUSR1",
                       [&](const std::string& id) { signal_batch(id, "USR1"); },
                       {"mpirun", "-np", "2", "--map-by", "node", prog("ring_openmpi"), "60", "100"}, expect);
}

// 'scancel JOBID' means "end it": Slurm sends SIGTERM to every process,
// cryo included.  cryo must not requeue a cancelled job; its checkpoints
// stay for a restart by hand.
TEST_F(SlurmTest, CancelledJobIsNotRequeued) {
  std::string id = submit({"--every", "2s", "-o", "/dev/null", "-e", work_ + "/slurm.err", "--", prog("solver"), "300",
                           "100"});
  std::string dir = store_ + "/slurm-" + id;
  ASSERT_TRUE(wait_event(dir, "checkpoint 0001 committed", 60));
  sh("scancel " + id);
  ASSERT_TRUE(wait_slurm_gone(id, 90)) << "the cancelled job is back in the queue: " << slurm_state(id);
  EXPECT_EQ(fast_copies("slurm-" + id), 0) << "the job left the node: its durable fast copies go with it";
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(slurm_state(id), "") << "requeued after scancel";
  std::string events;
  read_text(dir + "/cryo.log", &events);
  EXPECT_EQ(events.find("requeued; its next allocation"), std::string::npos) << events;
  auto st = status("slurm-" + id);
  EXPECT_NE(st.value("state", ""), "running") << st.dump();
  EXPECT_FALSE(st["latest"].is_null());
}

// No warning signal at all: at the hard time limit Slurm sends SIGTERM to
// every process, the job dies before any checkpoint, and cryo requeues it
// to continue from its latest periodic checkpoint.  The job's log (cut
// back at each restore) is that of an uninterrupted run.
TEST_F(SlurmTest, HardTimeLimitContinuesFromPeriodicCheckpoint) {
  // 100 s of work: Slurm enforces the 60 s limit at its next 30 s check.
  std::string expect = reference("400");
  std::string script = work_ + "/job.sh";
  std::ofstream(script) << "#!/bin/bash\nexec " << CRYO_BIN << " run --every 5s -- " << prog("solver") << " 400 250\n";
  int rc;
  std::string id = trim(sh("sbatch --parsable --time=1 --requeue --open-mode=append -o /dev/null -e " + work_ +
                               "/slurm.err " + script + " 2>&1",
                           &rc));
  ASSERT_EQ(rc, 0) << id;
  slurm_jobs_.push_back(id);
  jobs_.push_back("slurm-" + id);
  ASSERT_TRUE(wait_slurm_gone(id, 240));
  std::string events;
  read_text(store_ + "/slurm-" + id + "/cryo.log", &events);
  EXPECT_NE(events.find("at the time limit"), std::string::npos) << events;
  EXPECT_EQ(log("slurm-" + id), expect) << events;
  auto st = status("slurm-" + id);
  EXPECT_EQ(st.value("state", ""), "finished");
  EXPECT_GE(st.value("slurm_restarts", 0), 1);
}

// A job whose requeued run was cancelled continues in a new Slurm job that
// runs 'exec cryo restore NAME' (docs/slurm.md, restarting by hand).
TEST_F(SlurmTest, RestartByHandInANewSlurmJob) {
  const std::string steps = "60";
  std::string expect = reference(steps);
  std::string id = submit({"-o", "/dev/null", "-e", work_ + "/first.err", "--", prog("solver"), steps, "100"});
  std::string job = "slurm-" + id, dir = store_ + "/" + job;
  ASSERT_TRUE(wait_event(dir, "started in Slurm job", 30));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  signal_batch(id, "USR1");
  ASSERT_TRUE(wait_event(dir, "requeued", 30));
  sh("scancel " + id);
  ASSERT_TRUE(wait_slurm_gone(id, 30));

  int rc;
  std::string id2 = trim(sh("sbatch --parsable --requeue --open-mode=append --signal=B:USR1@120 -o " + work_ +
                                "/second.out --wrap 'exec " + CRYO_BIN + " restore " + job + "' 2>&1",
                            &rc));
  ASSERT_EQ(rc, 0) << id2;
  slurm_jobs_.push_back(id2);
  ASSERT_TRUE(wait_slurm_gone(id2, 60));
  EXPECT_EQ(log(job), expect);
  auto st = status(job);
  EXPECT_EQ(st.value("state", ""), "finished");
  EXPECT_EQ(st.value("slurm_job_id", ""), id2);
  auto allocs = st.value("allocations", nlohmann::json::array());
  ASSERT_EQ(allocs.size(), 2u);
  EXPECT_EQ(allocs[0].value("job_id", ""), id);
  EXPECT_EQ(allocs[1].value("job_id", ""), id2);
  EXPECT_EQ(allocs[1].value("restored_from", ""), "0001");
}

// The batch shell, not cryo, receives --signal=B:...; cryo says so when it
// is not the batch script's process.
TEST_F(SlurmTest, WarnsWhenTheBatchShellWouldTakeTheSignal) {
  std::string script = work_ + "/job.sh", err = work_ + "/slurm.err";
  std::ofstream(script) << "#!/bin/bash\n" << CRYO_BIN << " run -- " << prog("solver") << " 3 10\n";
  int rc;
  std::string id = trim(sh("sbatch --parsable -o /dev/null -e " + err + " " + script, &rc));
  ASSERT_EQ(rc, 0) << id;
  slurm_jobs_.push_back(id);
  jobs_.push_back("slurm-" + id);
  ASSERT_TRUE(wait_slurm_gone(id, 60));
  std::string text;
  read_text(err, &text);
  EXPECT_NE(text.find("warning: cryo is not the batch script itself but a child of '"), std::string::npos) << text;
  EXPECT_NE(text.find("exec cryo run"), std::string::npos);
  EXPECT_EQ(status("slurm-" + id).value("exit_code", -1), 0);
}

}  // namespace
}  // namespace cryo::test
