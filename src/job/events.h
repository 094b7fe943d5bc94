// The job's event log: one timestamped line per thing that happened to the
// job (started, checkpointed, restored, failed...), in <job dir>/cryo.log
// and, unless quiet, on stderr as "cryo: ...".
#pragma once

#include <string>
#include <vector>

#include "store/store.h"

namespace cryo::job {

void event(const store::JobDir& dir, const std::string& line, bool quiet);
// "retention (--keep N) removed 0001 0002", if anything was removed.
void retention_event(const store::JobDir& dir, int keep, const std::vector<std::string>& removed, bool quiet);

}  // namespace cryo::job
