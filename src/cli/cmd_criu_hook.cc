// cryo criu-hook JOB_DIR: not for people.  runc runs it, through the CRIU
// configuration cryo gives a Podman job's container, as CRIU's action
// script; see job/container.h.
#include "cli/common.h"
#include "job/container.h"

namespace cryo::cli {

void add_criu_hook_verb(CLI::App& app, Globals& g) {
  auto dir = std::make_shared<std::string>();
  auto* cmd = add_verb(app, "criu-hook", "CRIU's action script for a container job (run by runc, not by hand)");
  cmd->group("");  // hidden from --help
  cmd->add_option("job_dir", *dir)->required()->type_name("DIR");
  // CRIU tells its action scripts what happens in their environment.
  cmd->callback([&g, dir] {
    g_exit_code = job::criu_hook(*dir, g.settings.get("CRTOOLS_SCRIPT_ACTION"), g.settings.get("CRTOOLS_INIT_PID"));
  });
}

}  // namespace cryo::cli
