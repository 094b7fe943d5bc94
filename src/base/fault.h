// Named fault points for testing abort and rollback paths (CRIU's
// fault-injection).  CRYO_FAULT=store.before_rename makes the process that
// reaches that point kill itself with SIGKILL there.  Several points may be
// given, separated by commas.  CRYO_FAULT=@FILE reads the names from the
// first line of FILE at each point, so that a test can arm a running process.
#pragma once

namespace cryo {

void fault_point(const char* name);

}  // namespace cryo
