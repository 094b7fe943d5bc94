// The supervisor's decisions (job/supervisor.h), with a fake runtime, a
// fake clock and a faked Slurm: the phases a job goes through, which
// checkpoints begin and which are refused, what Slurm's end does, and how
// the job's end is recorded.
#include "job/supervisor.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "job_dir_test.h"

namespace cryo::job {
namespace {

// The seam: a runtime that records what the supervisor asks of it.
class FakeRuntime final : public Runtime {
 public:
  void start() override { started = true; }
  std::vector<int> fds() const override { return {}; }
  void on_ready(int) override {}
  void on_child() override { children++; }
  Status begin_checkpoint(const CheckpointRequest& r) override {
    if (refuse) return make_error("no worker");
    begun.push_back(r);
    flushing = true;
    return {};
  }
  bool busy() const override { return flushing; }
  void forward_signal(int sig) override { forwarded.push_back(sig); }
  void kill_job() override { kills++; }
  void fill_status(control::JobStatus& st) const override { st.set_job_pid(42); }
  void finish(State final, bool leaves) override {
    finished = final;
    leaves_node = leaves;
  }

  Listener& listener() { return *listener_; }

  bool started = false, refuse = false, flushing = false, leaves_node = false;
  int children = 0, kills = 0;
  std::vector<CheckpointRequest> begun;
  std::vector<int> forwarded;
  std::optional<State> finished;
};

class SupervisorTest : public test::JobDirTest {
 protected:
  SupervisorTest() : JobDirTest("sim") {}
  void SetUp() override {
    JobDirTest::SetUp();
    seam_.now = [this] { return now_; };
    seam_.slurm.now = [this] { return now_; };
    seam_.slurm.end_time = [this](const std::string&) -> Result<double> { return now_ + 120; };
    seam_.slurm.why_terminated = [this](const std::string&) -> Result<slurm::Ending> { return why_; };
    seam_.slurm.requeue = [this](const std::string& id) -> Status {
      requeued_.push_back(id);
      return {};
    };
  }
  // A supervisor of job "sim" with checkpoint signal USR2, started.
  std::unique_ptr<Supervisor> start(bool in_slurm = false) {
    Supervised s;
    s.dir = dir_.get();
    s.config.name = "sim";
    s.config.checkpoint_on = in_slurm ? "" : "USR2";
    s.quiet = true;
    if (in_slurm) {
      slurm::Env env;
      env.job_id = "7";
      s.slurm = env;
    }
    auto sup = std::make_unique<Supervisor>(std::move(s), rt_, seam_);
    rt_.attach(*sup);
    sup->start();
    return sup;
  }
  static CheckpointOutcome outcome(CheckpointOutcome::Result r, bool stop, bool dumped) {
    CheckpointOutcome o;
    o.result = r;
    o.stop = stop;
    o.dumped = dumped;
    o.seconds = 3;
    return o;
  }

  FakeRuntime rt_;
  Supervisor::Seam seam_;
  slurm::Ending why_ = slurm::Ending::time_limit;
  std::vector<std::string> requeued_;
};

using R = CheckpointOutcome::Result;

TEST_F(SupervisorTest, StartsRunningAndRecordsItself) {
  auto sup = start();
  EXPECT_TRUE(rt_.started);
  EXPECT_EQ(sup->phase(), Phase::running);
  auto st = load_state(*dir_);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, State::running);
  EXPECT_EQ(st->supervisor_pid, ::getpid());
  auto status = sup->status(1060);
  EXPECT_EQ(status.state(), "running");
  EXPECT_EQ(status.job_pid(), 42) << "the runtime fills its part";
  EXPECT_EQ(status.next_checkpoint(), 1060);
}

TEST_F(SupervisorTest, OneDumpAtATimeAndTheBusyErrorSaysForHowLong) {
  auto sup = start();
  ASSERT_TRUE(sup->request_checkpoint(CheckpointRequest{false, false, false, 9}).ok());
  ASSERT_EQ(rt_.begun.size(), 1u);
  EXPECT_EQ(rt_.begun[0].client_fd, 9) << "the runtime answers the client";
  EXPECT_EQ(sup->phase(), Phase::checkpointing);
  EXPECT_EQ(sup->status(0).state(), "checkpointing");
  now_ += 3;
  Status again = sup->request_checkpoint(CheckpointRequest{});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::busy);
  EXPECT_NE(again.error().message.find("already in progress (for 3.0 s)"), std::string::npos) << again.error().message;
  EXPECT_EQ(rt_.begun.size(), 1u);
  // Once dumped, the next may begin while the first still flushes.
  rt_.listener().dumped();
  EXPECT_EQ(sup->phase(), Phase::running);
  EXPECT_TRUE(sup->request_checkpoint(CheckpointRequest{}).ok());
  EXPECT_EQ(rt_.begun.size(), 2u);
}

TEST_F(SupervisorTest, ThePeriodicCheckpointWaitsUntilThePreviousIsDurable) {
  auto sup = start();
  sup->on_timer();
  ASSERT_EQ(rt_.begun.size(), 1u);
  rt_.listener().dumped();
  sup->on_timer();
  EXPECT_EQ(rt_.begun.size(), 1u) << "the first still flushes";
  rt_.flushing = false;
  rt_.listener().checkpoint_ended(outcome(R::durable, false, true));
  sup->on_timer();
  EXPECT_EQ(rt_.begun.size(), 2u);
}

TEST_F(SupervisorTest, TheCheckpointSignalBeginsOneUnlessOneIsDumping) {
  auto sup = start();
  sup->on_signal(SIGUSR2);
  ASSERT_EQ(rt_.begun.size(), 1u);
  EXPECT_FALSE(rt_.begun[0].stop);
  sup->on_signal(SIGUSR2);
  EXPECT_EQ(rt_.begun.size(), 1u);
  EXPECT_NE(events().find("a checkpoint is already running, ignoring"), std::string::npos) << events();
  EXPECT_TRUE(rt_.forwarded.empty()) << "the checkpoint signal is cryo's, not the job's";
}

TEST_F(SupervisorTest, OtherSignalsGoToTheJobButNotSigpipe) {
  auto sup = start();
  sup->on_signal(SIGHUP);
  sup->on_signal(SIGPIPE);
  sup->on_signal(SIGCHLD);
  EXPECT_EQ(rt_.forwarded, std::vector<int>{SIGHUP});
  EXPECT_EQ(rt_.children, 1);
  rt_.listener().job_ended(W_EXITCODE(0, 0));
  sup->on_signal(SIGTERM);
  EXPECT_EQ(rt_.forwarded, std::vector<int>{SIGHUP}) << "an ended job gets no more signals";
}

TEST_F(SupervisorTest, AStopCheckpointEndsTheJobAsStopped) {
  auto sup = start();
  ASSERT_TRUE(sup->request_checkpoint(CheckpointRequest{true, false, true, -1}).ok());
  EXPECT_EQ(sup->phase(), Phase::stopping);
  rt_.listener().dumped();
  EXPECT_EQ(sup->phase(), Phase::stopping) << "until it is durable";
  Status refused = sup->request_checkpoint(CheckpointRequest{});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("is stopping at a checkpoint"), std::string::npos);
  commit("0001");
  rt_.flushing = false;
  rt_.listener().checkpoint_ended(outcome(R::stopped, true, true));
  EXPECT_FALSE(sup->done()) << "the job's end is still to come";
  rt_.listener().job_ended(W_EXITCODE(0, SIGKILL));
  ASSERT_TRUE(sup->done());
  EXPECT_EQ(sup->finish(), kExitStopped);
  EXPECT_EQ(rt_.finished, State::stopped);
  auto st = load_state(*dir_);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, State::stopped);
  EXPECT_EQ(st->message, "stopped at checkpoint 0001");
}

TEST_F(SupervisorTest, AStopThatFailsLetsTheJobRunOn) {
  auto sup = start();
  ASSERT_TRUE(sup->request_checkpoint(CheckpointRequest{true, false, true, -1}).ok());
  rt_.flushing = false;
  rt_.listener().checkpoint_ended(outcome(R::failed, true, false));
  EXPECT_EQ(sup->phase(), Phase::running);
  EXPECT_TRUE(sup->request_checkpoint(CheckpointRequest{}).ok());
}

TEST_F(SupervisorTest, ARuntimeThatCannotBeginLeavesTheJobRunning) {
  auto sup = start();
  rt_.refuse = true;
  Status st = sup->request_checkpoint(CheckpointRequest{});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "no worker");
  EXPECT_EQ(sup->phase(), Phase::running);
  EXPECT_NE(events().find("checkpoint failed: no worker"), std::string::npos) << events();
}

TEST_F(SupervisorTest, TheJobEndsOnlyWhenItsFlushesHaveEnded) {
  auto sup = start();
  ASSERT_TRUE(sup->request_checkpoint(CheckpointRequest{}).ok());
  rt_.listener().dumped();
  rt_.listener().job_ended(W_EXITCODE(3, 0));
  EXPECT_EQ(sup->phase(), Phase::ended);
  EXPECT_EQ(sup->status(0).state(), "ending");
  EXPECT_FALSE(sup->done()) << "a checkpoint still flushes";
  EXPECT_FALSE(sup->request_checkpoint(CheckpointRequest{}).ok());
  rt_.flushing = false;
  rt_.listener().checkpoint_ended(outcome(R::durable, false, true));
  ASSERT_TRUE(sup->done());
  EXPECT_EQ(sup->finish(), 3);
  EXPECT_EQ(rt_.finished, State::finished);
  EXPECT_NE(events().find("job 'sim' finished with exit status 3"), std::string::npos) << events();
}

TEST_F(SupervisorTest, AKilledJobSaysWhetherItCanContinue) {
  {
    auto sup = start();
    rt_.listener().job_ended(W_EXITCODE(0, SIGKILL));
    EXPECT_EQ(sup->finish(), 128 + SIGKILL);
    EXPECT_NE(events().find("was killed by signal 9; it has no checkpoint to continue from"), std::string::npos)
        << events();
  }
  commit("0001");
  auto sup = start();
  rt_.listener().job_ended(W_EXITCODE(0, SIGKILL));
  EXPECT_EQ(sup->finish(), 128 + SIGKILL);
  EXPECT_NE(events().find("'cryo restore sim' continues it from checkpoint 0001"), std::string::npos) << events();
  auto st = load_state(*dir_);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, State::failed);
  EXPECT_EQ(st->message, "the job was killed by signal 9 (KILL)");
}

TEST_F(SupervisorTest, SlurmsWarningStopsAndRequeues) {
  auto sup = start(true);
  EXPECT_EQ(sup->config().checkpoint_on, "USR1") << "Slurm's default warning signal";
  sup->on_signal(SIGUSR1);
  ASSERT_EQ(rt_.begun.size(), 1u);
  EXPECT_TRUE(rt_.begun[0].stop);
  EXPECT_TRUE(rt_.begun[0].wait);
  sup->on_signal(SIGUSR1);
  EXPECT_EQ(rt_.begun.size(), 1u) << "the end begins once";
  commit("0001");
  rt_.flushing = false;
  rt_.listener().checkpoint_ended(outcome(R::stopped, true, true));
  rt_.listener().job_ended(W_EXITCODE(0, SIGKILL));
  EXPECT_EQ(sup->finish(), 0) << "requeued: the batch script ends well";
  EXPECT_EQ(requeued_, std::vector<std::string>{"7"});
  EXPECT_TRUE(rt_.leaves_node) << "its fast copies are of no use here any more";
}

TEST_F(SupervisorTest, SlurmsWarningDuringADumpStopsRightAfterIt) {
  auto sup = start(true);
  ASSERT_TRUE(sup->request_checkpoint(CheckpointRequest{}).ok());
  sup->on_signal(SIGUSR1);
  EXPECT_EQ(rt_.begun.size(), 1u) << "one dump at a time";
  rt_.listener().dumped();
  ASSERT_EQ(rt_.begun.size(), 2u) << "the stop follows the dump";
  EXPECT_TRUE(rt_.begun[1].stop);
  EXPECT_EQ(sup->phase(), Phase::stopping);
}

TEST_F(SupervisorTest, AFailedEndCheckpointStopsTheJobIfThereIsOneToContinueFrom) {
  commit("0001");
  auto sup = start(true);
  sup->on_signal(SIGUSR1);
  rt_.flushing = false;
  rt_.listener().checkpoint_ended(outcome(R::failed, true, false));
  EXPECT_EQ(rt_.kills, 1);
  EXPECT_NE(events().find("checkpoint 0001 stays the latest: stopping the job"), std::string::npos) << events();
  rt_.listener().job_ended(W_EXITCODE(0, SIGKILL));
  EXPECT_EQ(sup->finish(), 0);
  EXPECT_EQ(requeued_, std::vector<std::string>{"7"}) << "the next allocation continues from 0001";
}

TEST_F(SupervisorTest, AFailedEndCheckpointWithNothingToContinueFromLetsTheJobRunOn) {
  auto sup = start(true);
  sup->on_signal(SIGUSR1);
  rt_.flushing = false;
  rt_.listener().checkpoint_ended(outcome(R::failed, true, false));
  EXPECT_EQ(rt_.kills, 0);
  EXPECT_EQ(sup->phase(), Phase::running);
  EXPECT_NE(events().find("no earlier checkpoint: it keeps running"), std::string::npos) << events();
}

TEST_F(SupervisorTest, ACancelPassesSigtermToTheJob) {
  why_ = slurm::Ending::cancelled;
  auto sup = start(true);
  sup->on_signal(SIGTERM);
  EXPECT_TRUE(rt_.begun.empty()) << "a cancel is not an end to checkpoint";
  EXPECT_EQ(rt_.forwarded, std::vector<int>{SIGTERM});
  rt_.listener().job_ended(W_EXITCODE(0, SIGTERM));
  EXPECT_EQ(sup->finish(), 128 + SIGTERM);
  EXPECT_TRUE(requeued_.empty());
}

}  // namespace
}  // namespace cryo::job
