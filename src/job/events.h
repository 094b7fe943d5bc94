// The job's event log: one timestamped line per thing that happened to the
// job (started, checkpointed, restored, failed...), in <job dir>/cryo.log
// and, unless quiet, on stderr as "cryo: ...".
#pragma once

#include <string>

#include "store/store.h"

namespace cryo::job {

void event(const store::JobDir& dir, const std::string& line, bool quiet);

}  // namespace cryo::job
