// The supervisor: the process that 'cryo run' and 'cryo restore' become,
// for every job.  It stays outside the job and
//   - answers 'cryo status', 'cryo checkpoint' (and a multi-node job's
//     'cryo rsh') on the job's control socket,
//   - takes the --every and --checkpoint-on checkpoints,
//   - under Slurm, checkpoints, stops and requeues the job when its
//     allocation ends (job/allocation.h),
//   - passes other signals on to the job,
//   - records the job's state, and exits with the job's exit status (75 if
//     it was stopped at a checkpoint).
// What runs the job is a Runtime: its process tree on this node
// (job/local.h) or its parts on agents (coord/runtime.h).  The supervisor
// decides when a checkpoint begins and what its end means; the runtime
// takes it, asynchronously, and reports back, so that the supervisor
// answers 'cryo status' while a checkpoint runs.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "control.pb.h"
#include "job/allocation.h"
#include "job/config.h"
#include "slurm/slurm.h"
#include "store/store.h"

namespace cryo::job {

// The exit status of cryo when the job was stopped at a checkpoint and can
// be continued with 'cryo restore' (EX_TEMPFAIL).
inline constexpr int kExitStopped = 75;

// Takes the job's lock, held by its supervisor for its whole life.  Fails
// if another supervisor holds it.
Result<UniqueFd> lock_job(const store::JobDir& dir);

// Where a supervised job stands.
enum class Phase {
  running,        // no checkpoint is dumping (earlier ones may be flushing)
  checkpointing,  // a checkpoint is dumping; the job runs on after it
  stopping,       // a checkpoint that stops the job runs, until it is durable
  ended,          // the job ended or was stopped; what is still flushing finishes, then the supervisor
};
// "running", "checkpointing", "stopping", "ending": JobStatus.state.
const char* phase_name(Phase p);

struct CheckpointRequest {
  bool stop = false;  // stop the job once the checkpoint is durable
  bool tcp_established = false;
  bool wait = false;   // answer the client once durable, not once dumped
  int client_fd = -1;  // the control connection that asked, answered by the runtime; -1 if none
};

// How a checkpoint that a runtime began came out.
struct CheckpointOutcome {
  enum class Result {
    durable,  // committed in the store; the job runs on
    stopped,  // committed, and the job was stopped (its end follows)
    failed,   // not made, or not made durable; the job runs on
  };
  Result result = Result::failed;
  bool stop = false;    // it was asked to stop the job
  bool dumped = false;  // its dump had completed (Runtime::Listener::dumped came)
  double seconds = 0;   // from its start to its end
};

// What runs a supervised job.
class Runtime {
 public:
  // What a runtime tells its supervisor.
  class Listener {
   public:
    virtual ~Listener() = default;
    // The checkpoint's dump is complete; the job runs (or is stopped) and
    // the next checkpoint may begin.
    virtual void dumped() = 0;
    virtual void checkpoint_ended(const CheckpointOutcome& o) = 0;
    // The job (a multi-node job: part 0's command) ended, with this waitpid status.
    virtual void job_ended(int wait_status) = 0;
  };

  virtual ~Runtime() = default;
  void attach(Listener& l) { listener_ = &l; }

  // Once the supervisor watches its signals and socket: the job may have
  // ended before.
  virtual void start() = 0;
  // The fds to poll for it now; on_ready(fd) when one is readable.
  virtual std::vector<int> fds() const = 0;
  virtual void on_ready(int fd) = 0;
  // SIGCHLD came: reap what is the runtime's.
  virtual void on_child() = 0;
  // Begins a checkpoint (one dumps at a time: never while one dumps).  It
  // answers r.client_fd itself, then or later; a failure returned here is
  // the supervisor's to report.
  virtual Status begin_checkpoint(const CheckpointRequest& r) = 0;
  // A checkpoint is still dumping or flushing.
  virtual bool busy() const = 0;
  // A signal for the job (SIGTERM, SIGINT, SIGHUP...).
  virtual void forward_signal(int sig) = 0;
  // Ends the job now (its end follows as job_ended).
  virtual void kill_job() = 0;
  // The runtime's part of 'cryo status'.
  virtual void fill_status(control::JobStatus& st) const = 0;
  // 'cryo rsh': runs argv in a part; answers client with `ok` or a failure.
  virtual void spawn(const control::SpawnRequest& r, UniqueFd client, const control::Reply& ok);
  // The job has ended (as `final`): what it leaves behind.  Called once,
  // before the job's state is saved.  leaves_node: the job goes on, if at
  // all, in another allocation (anywhere).
  virtual void finish(State final, bool leaves_node) = 0;

 protected:
  Listener* listener_ = nullptr;
};

struct Supervised {
  store::JobDir* dir = nullptr;
  JobConfig config;
  JobState state;  // as it starts: running, with pids filled in
  UniqueFd lock;
  bool quiet = false;  // no event lines on stderr
  // Inside a Slurm batch job: the checkpoint signal and SIGTERM mean the
  // allocation is ending, so cryo checkpoints, stops the job, requeues it
  // and exits 0; the next allocation restores.
  std::optional<slurm::Env> slurm;
};

// The supervisor's decisions, apart from its loop (supervise() below): a
// unit test drives it with a fake runtime and clock.
class Supervisor final : public Runtime::Listener {
 public:
  struct Seam {
    std::function<double()> now;  // default: sys::now
    SlurmSeam slurm;
  };
  Supervisor(Supervised s, Runtime& rt, Seam seam = {});

  // Records the job as running and starts the runtime.
  void start();
  Phase phase() const { return phase_; }
  const JobConfig& config() const { return s_.config; }
  // The job ended and nothing flushes any more: finish() may run.
  bool done() const { return phase_ == Phase::ended && !rt_.busy(); }

  // A signal: the --checkpoint-on signal, Slurm's end, or one for the job.
  void on_signal(int sig);
  void on_timer();
  // A client asks for a checkpoint; a refusal is returned for it.
  Status request_checkpoint(const CheckpointRequest& r);
  control::JobStatus status(double next_checkpoint) const;

  void dumped() override;
  void checkpoint_ended(const CheckpointOutcome& o) override;
  void job_ended(int wait_status) override;

  // Records how the job ended; returns cryo's exit status.
  int finish();

 private:
  double now() const;
  Status begin(const CheckpointRequest& r);
  void on_allocation_end(int sig);
  // After a dump or a checkpoint ends: the stop that waited for it.
  void run_queued();

  Supervised s_;
  store::JobDir& dir_;
  Runtime& rt_;
  Seam seam_;
  Phase phase_ = Phase::running;
  double dump_started_ = 0;
  // A stop checkpoint asked for while another dumped: it begins next.
  std::optional<CheckpointRequest> queued_;
  bool stopped_ = false;  // the job was stopped at a checkpoint
  int job_status_ = 0;
  double last_checkpoint_seconds_ = 0;
  std::optional<SlurmAllocation> alloc_;
};

// Runs the supervisor's loop until the job ends or is stopped at a
// checkpoint, and finishes; returns cryo's exit status.
int supervise(Supervised s, Runtime& rt);

}  // namespace cryo::job
