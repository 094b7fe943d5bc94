// The job's stdout and stderr: pipes whose read ends the supervisor holds,
// appended to <job dir>/stdout.log and stderr.log.  Keeping the files out
// of the dumped tree means CRIU never sees them, and a checkpoint records
// each log's size at the instant the job was frozen.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "store/store.h"

namespace cryo::job {

struct Output {
  std::string name;  // "stdout" or "stderr"
  UniqueFd pipe;     // read end, non-blocking
  UniqueFd log;      // the log file, O_APPEND
  int tee = -1;      // also copy here (cryo's own stdout/stderr), or -1
  bool eof = false;
};

// Opens <job dir>/<name>.log for appending and makes the pipe non-blocking.
Result<Output> open_output(const store::JobDir& dir, const std::string& name, UniqueFd pipe, int tee);
// Moves whatever the pipe holds now into the log; sets eof at end of file.
Status drain(Output& o);
// The "pipe:[inode]" key CRIU uses for the pipe.
Result<std::string> pipe_key(const Output& o);

}  // namespace cryo::job
