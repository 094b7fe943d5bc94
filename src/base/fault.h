// Named fault points for testing abort and rollback paths (CRIU's
// fault-injection).  CRYO_FAULT=store.before_rename (set_fault_points) makes the process that
// reaches that point kill itself with SIGKILL there.  Several points may be
// given, separated by commas.  CRYO_FAULT=@FILE reads the names from the
// first line of FILE at each point, so that a test can arm a running process.
#pragma once

#include <string>

namespace cryo {

// Arms the points named in spec (the settings' CRYO_FAULT), in this
// process and the processes it forks.
void set_fault_points(const std::string& spec);
void fault_point(const char* name);

}  // namespace cryo
