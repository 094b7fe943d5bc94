// A supervised job's time in one Slurm allocation (job/supervisor.h): its record in state.json's allocations, the end of
// the allocation (the warning signal or a preemption's SIGTERM, told from
// a cancel's), the advice on the warning margin, and the requeue.
#pragma once

#include <functional>
#include <string>

#include "base/result.h"
#include "job/config.h"
#include "slurm/slurm.h"
#include "store/store.h"

namespace cryo::job {

// What a SlurmAllocation asks of Slurm and the clock: the real ones, or a
// unit test's.
struct SlurmSeam {
  std::function<Result<double>(const std::string& job_id)> end_time = slurm::end_time;
  std::function<Result<slurm::Ending>(const std::string& job_id)> why_terminated = slurm::why_terminated;
  std::function<Status(const std::string& job_id)> requeue = slurm::requeue;
  std::function<double()> now;  // default: sys::now
};

class SlurmAllocation {
 public:
  // checkpoint_on: the warning signal's name, for the advice.
  SlurmAllocation(slurm::Env env, const store::JobDir& dir, std::string checkpoint_on, bool quiet,
                  SlurmSeam seam = {});

  const slurm::Env& env() const { return env_; }
  // Appends this allocation's record (running) to st.allocations.
  void begin(JobState& st) const;
  // Whether a SIGTERM comes from a cancel (the job is to end, not move
  // on); says so in the job's events the first time.
  bool cancelled();
  // The allocation's end begins, with signal sig: true the first time,
  // when it also notes how long is left before the time limit.
  bool begin_end();
  // "received SIGUSR1 from Slurm, 2m before the time limit: WHAT" for the job's events.
  std::string end_line(int sig, const std::string& what) const;
  bool ending() const { return ending_; }
  // The end's checkpoint failed and there is nothing to continue from:
  // the job runs on as if no end had come.
  void end_abandoned() { ending_ = false; }
  // A checkpoint during the allocation took `seconds`: it predicts the
  // one at the end, so compare it with the margin the warning left last
  // time, and advise now, while the margin can still be changed.
  void checkpoint_taken(double seconds, const JobState& st);
  // Completes the allocation's record in st and saves st; requeues the
  // Slurm job when the job stopped at a checkpoint, or the allocation
  // ended with a checkpoint to continue from (never after a cancel).
  // last_checkpoint: the last checkpoint's duration, 0 if none.  Returns
  // cryo's exit status: 0 once requeued, else `code`.
  int finish(JobState& st, int code, bool stopped, double last_checkpoint);

 private:
  double now() const;

  slurm::Env env_;
  const store::JobDir& dir_;
  std::string checkpoint_on_;
  bool quiet_;
  SlurmSeam seam_;
  bool ending_ = false, cancelled_ = false;
  double ending_since_ = 0;
  double margin_ = 0;  // seconds left before the time limit when the end began, 0 = unknown
  bool at_limit_ = false;
};

}  // namespace cryo::job
