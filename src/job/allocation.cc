#include "job/allocation.h"

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "job/events.h"

namespace cryo::job {

SlurmAllocation::SlurmAllocation(slurm::Env env, const store::JobDir& dir, std::string checkpoint_on, bool quiet,
                                 SlurmSeam seam)
    : env_(std::move(env)), dir_(dir), checkpoint_on_(std::move(checkpoint_on)), quiet_(quiet), seam_(std::move(seam)) {}

double SlurmAllocation::now() const { return seam_.now ? seam_.now() : sys::now(); }

void SlurmAllocation::begin(JobState& st) const {
  Allocation a;
  a.job_id = env_.job_id;
  a.restart = env_.restart_count;
  a.nodes = env_.nodes;
  a.host = st.host;
  a.start = st.since;
  a.restored_from = st.restores > 0 ? st.restored_from : "";
  a.outcome = "running";
  st.allocations.push_back(a);
}

bool SlurmAllocation::cancelled() {
  auto why = seam_.why_terminated(env_.job_id);
  if (!why || *why != slurm::Ending::cancelled) return false;
  if (!cancelled_) {
    cancelled_ = true;
    event(dir_, fmt::format("Slurm job {} was cancelled: ending the job without requeueing it; its checkpoints stay "
                            "for 'cryo restore {}'", env_.job_id, dir_.name()), quiet_);
  }
  return true;
}

bool SlurmAllocation::begin_end() {
  if (ending_) return false;
  ending_ = true;
  ending_since_ = now();
  if (auto end = seam_.end_time(env_.job_id); end && *end > ending_since_)
    margin_ = *end - ending_since_;
  else if (end && *end > 0)
    at_limit_ = true;
  return true;
}

std::string SlurmAllocation::end_line(int sig, const std::string& what) const {
  std::string left = margin_ > 0 ? fmt::format(", {} before the time limit", format_duration(margin_))
                     : at_limit_ ? " at the time limit" : "";
  const char* name = sigabbrev_np(sig);
  return fmt::format("received SIG{} from Slurm{}: {}", name ? name : "?", left, what);
}

void SlurmAllocation::checkpoint_taken(double seconds, const JobState& st) {
  if (ending_) return;
  double margin = 0;
  for (const auto& a : st.allocations) margin = a.margin_seconds > 0 ? a.margin_seconds : margin;
  if (margin <= 0 || !slurm::margin_too_short(seconds, margin)) return;
  event(dir_, fmt::format("warning: this checkpoint took {}, but the warning signal came only {} before the time "
                          "limit last time; the checkpoint at the end of this allocation may not fit: submit with "
                          "--signal=B:{}@{}", format_duration(seconds), format_duration(margin), checkpoint_on_,
                          slurm::suggested_margin(seconds)), quiet_);
}

int SlurmAllocation::finish(JobState& st, int code, bool stopped, double last_checkpoint) {
  Allocation& a = st.allocations.back();
  a.end = now();
  auto latest = dir_.latest_id();
  std::string checkpoint = latest ? *latest : "";
  bool requeue = !cancelled_ && (stopped || (ending_ && !checkpoint.empty()));
  if (stopped) {
    a.checkpoint_seconds = a.end - ending_since_;
    a.margin_seconds = margin_;
    a.outcome = "checkpointed (" + checkpoint + ") and requeued";
    if (margin_ > 0 && slurm::margin_too_short(a.checkpoint_seconds, margin_))
      event(dir_, fmt::format("warning: the checkpoint took {} of the {} left before the time limit; the next one "
                              "may not fit: submit with --signal=B:{}@{}", format_duration(a.checkpoint_seconds),
                              format_duration(margin_), checkpoint_on_, slurm::suggested_margin(a.checkpoint_seconds)),
            quiet_);
  } else if (requeue) {
    // Slurm's SIGTERM reached the job too (time limit, preemption): it did
    // not finish, it continues from the latest checkpoint.
    a.outcome = "ended before its checkpoint; requeued to continue from " + checkpoint;
    st.state = State::failed;
    st.message = "ended by Slurm before its checkpoint; continues from checkpoint " + checkpoint;
  } else if (cancelled_) {
    a.outcome = "cancelled";
  } else if (st.state == State::finished) {
    a.outcome = fmt::format("finished with exit status {}", st.exit_code);
  } else {
    a.outcome = st.message;
  }
  if (last_checkpoint > 0 && a.checkpoint_seconds == 0) a.checkpoint_seconds = last_checkpoint;
  // The state is durable before the requeue: the next allocation reads it.
  if (auto r = save_state(dir_, st); !r) event(dir_, "warning: " + r.error().message, quiet_);
  if (!requeue) return code;
  if (auto r = seam_.requeue(env_.job_id); !r) {
    a.outcome += "; requeue failed";
    (void)save_state(dir_, st);
    event(dir_, fmt::format("cannot requeue Slurm job {}: {}; continue it by submitting the same batch script "
                            "again (with --name {}), or with 'cryo restore {}'", env_.job_id, r.error().message,
                            dir_.name(), dir_.name()), quiet_);
    return code;
  }
  event(dir_, fmt::format("Slurm job {} requeued; its next allocation restores checkpoint {}", env_.job_id, checkpoint),
        quiet_);
  return 0;
}

}  // namespace cryo::job
