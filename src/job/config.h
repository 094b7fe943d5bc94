// What the store keeps about a job outside its checkpoints:
//   job.json   how it was started; written once by 'cryo run'
//   state.json what its supervisor last reported; replaced atomically
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "store/store.h"

namespace cryo::job {

struct JobConfig {
  std::string name;
  std::vector<std::string> command;
  std::string cwd;
  double created = 0;
  uid_t uid = 0;
  std::string host;
  double every = 0;              // seconds between periodic checkpoints, 0 = none
  int keep = 0;                  // checkpoints to keep, 0 = all
  std::string checkpoint_on;     // signal name, "" = none
  bool tcp_established = false;
  bool private_net = false;
};

enum class State { running, finished, stopped, failed };
const char* state_name(State s);

struct JobState {
  State state = State::running;
  std::string host;
  pid_t supervisor_pid = 0;
  pid_t job_pid = 0;        // host PID of the job's init
  double since = 0;         // when this state began
  int exit_code = -1;       // when finished: the job's exit status
  int restores = 0;         // how many times it was restored
  std::string restored_from;
  std::string message;      // for failed: why
};

Status save_config(const store::JobDir& dir, const JobConfig& c);
Result<JobConfig> load_config(const store::JobDir& dir);
Status save_state(const store::JobDir& dir, const JobState& s);
// A job that never reported a state (it is starting) reads as running.
Result<JobState> load_state(const store::JobDir& dir);

}  // namespace cryo::job
