// A supervised job's Slurm allocation (job/allocation.h), with Slurm and
// the clock faked: the end of the allocation, the requeue, the advice on
// the warning margin, and the record every allocation leaves.
#include "job/allocation.h"

#include <signal.h>

#include <gtest/gtest.h>

#include "job_dir_test.h"

namespace cryo::job {
namespace {

class AllocationTest : public test::JobDirTest {
 protected:
  AllocationTest() : JobDirTest("slurm-7") {}
  void SetUp() override {
    JobDirTest::SetUp();
    env_.job_id = "7";
    env_.restart_count = 2;
    seam_.now = [this] { return now_; };
    seam_.end_time = [this](const std::string&) -> Result<double> { return end_; };
    seam_.why_terminated = [this](const std::string&) -> Result<slurm::Ending> { return why_; };
    seam_.requeue = [this](const std::string& id) -> Status {
      requeued_.push_back(id);
      return {};
    };
    state_.host = "n1";
    state_.since = now_;
  }

  slurm::Env env_;
  SlurmSeam seam_;
  double end_ = 1120;
  slurm::Ending why_ = slurm::Ending::time_limit;
  std::vector<std::string> requeued_;
  JobState state_;
};

TEST_F(AllocationTest, TheWarningStopsAtACheckpointAndRequeues) {
  SlurmAllocation a(env_, *dir_, "USR1", true, seam_);
  a.begin(state_);
  ASSERT_EQ(state_.allocations.size(), 1u);
  EXPECT_EQ(state_.allocations[0].restart, 2);
  EXPECT_EQ(state_.allocations[0].outcome, "running");
  EXPECT_FALSE(a.cancelled());
  EXPECT_TRUE(a.begin_end());
  EXPECT_FALSE(a.begin_end()) << "the end begins once";
  EXPECT_NE(a.end_line(SIGUSR1, "checkpointing").find("received SIGUSR1 from Slurm, 2m"), std::string::npos)
      << a.end_line(SIGUSR1, "checkpointing");
  commit("0001");
  now_ = 1030;
  state_.state = State::stopped;
  EXPECT_EQ(a.finish(state_, 75, true, 30), 0) << "requeued: the batch script ends well";
  EXPECT_EQ(requeued_, std::vector<std::string>{"7"});
  const Allocation& r = state_.allocations.back();
  EXPECT_EQ(r.outcome, "checkpointed (0001) and requeued");
  EXPECT_DOUBLE_EQ(r.checkpoint_seconds, 30);
  EXPECT_DOUBLE_EQ(r.margin_seconds, 120);
  EXPECT_DOUBLE_EQ(r.end, 1030);
  // The state was saved before the requeue, for the next allocation.
  auto saved = load_state(*dir_);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->allocations.back().outcome, "checkpointed (0001) and requeued");
}

TEST_F(AllocationTest, ACancelEndsTheJobWithoutARequeue) {
  SlurmAllocation a(env_, *dir_, "USR1", true, seam_);
  a.begin(state_);
  commit("0001");
  why_ = slurm::Ending::cancelled;
  EXPECT_TRUE(a.cancelled());
  EXPECT_TRUE(a.cancelled());
  state_.state = State::failed;
  EXPECT_EQ(a.finish(state_, 143, false, 0), 143);
  EXPECT_TRUE(requeued_.empty());
  EXPECT_EQ(state_.allocations.back().outcome, "cancelled");
  EXPECT_NE(events().find("was cancelled: ending the job without requeueing it; its checkpoints stay for "
                          "'cryo restore slurm-7'"), std::string::npos) << events();
}

TEST_F(AllocationTest, AFailedEndCheckpointContinuesFromTheLatestOrRunsOn) {
  {
    SlurmAllocation a(env_, *dir_, "USR1", true, seam_);
    a.begin(state_);
    ASSERT_TRUE(a.begin_end());
    // No checkpoint to continue from: the job runs on, nothing to requeue.
    a.end_abandoned();
    state_.state = State::finished;
    state_.exit_code = 0;
    EXPECT_EQ(a.finish(state_, 0, false, 0), 0);
    EXPECT_TRUE(requeued_.empty());
    EXPECT_EQ(state_.allocations.back().outcome, "finished with exit status 0");
  }
  commit("0001");
  SlurmAllocation a(env_, *dir_, "USR1", true, seam_);
  a.begin(state_);
  ASSERT_TRUE(a.begin_end());
  state_.state = State::failed;
  EXPECT_EQ(a.finish(state_, 137, false, 0), 0);
  EXPECT_EQ(requeued_, std::vector<std::string>{"7"});
  EXPECT_EQ(state_.state, State::failed);
  EXPECT_EQ(state_.allocations.back().outcome, "ended before its checkpoint; requeued to continue from 0001");
}

TEST_F(AllocationTest, ACheckpointLongerThanTheLastMarginIsAdvisedAgainst) {
  Allocation before;
  before.margin_seconds = 30;
  state_.allocations.push_back(before);
  SlurmAllocation a(env_, *dir_, "USR2", true, seam_);
  a.begin(state_);
  a.checkpoint_taken(5, state_);
  EXPECT_EQ(events().find("warning"), std::string::npos) << events();
  a.checkpoint_taken(40, state_);
  EXPECT_NE(events().find("submit with --signal=B:USR2@"), std::string::npos) << events();
}

}  // namespace
}  // namespace cryo::job
