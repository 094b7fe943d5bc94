// The job's event log: one timestamped line per thing that happened to the
// job (started, checkpointed, restored, failed...), in <job dir>/cryo.log
// and, unless quiet, on stderr as "cryo: ...".
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "store/store.h"

namespace cryo::job {

void event(const store::JobDir& dir, const std::string& line, bool quiet);
// What a failed checkpoint leaves as it was.
inline constexpr const char* kUnharmed = "the job keeps running and earlier checkpoints are unchanged";
// "checkpoint failed: WHY (HINT); <kUnharmed>", and with `latest_of`, which
// of its checkpoints stays the latest: " (checkpoint 0003 stays the latest)".
std::string failed_line(const Error& e, const store::JobDir* latest_of = nullptr);
// "retention (--keep N) removed 0001 0002", if anything was removed.
void retention_event(const store::JobDir& dir, int keep, const std::vector<std::string>& removed, bool quiet);

}  // namespace cryo::job
