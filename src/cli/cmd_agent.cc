// cryo agent: the per-node service of multi-node jobs (src/coord/agent.h).
#include <unistd.h>

#include <cstdlib>

#include "base/sys.h"
#include "cli/common.h"
#include "coord/agent.h"

namespace cryo::cli {

void add_agent_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<coord::AgentOptions>();
  auto* cmd = add_verb(app, "agent", "Serve a node's parts of multi-node jobs",
      "Run the agent of this node for multi-node jobs ('cryo run --agents ...'): it\n"
      "listens on --listen for a job's coordinator, and runs, checkpoints and\n"
      "restores the job's parts that live on this node, each in its own network\n"
      "namespace on the --bridge the job names.  Start one per node (under Slurm:\n"
      "srun --ntasks-per-node=1 cryo agent ...).  It runs until killed.  See docs/mpi.md.");
  cmd->add_option("--listen", o->listen, "IP:PORT to listen on (port 0: any free one; default 127.0.0.1:0)")->type_name("IP:PORT");
  cmd->add_option("--node", o->node, "This node's name (default: the host name)")->type_name("NODE");
  cmd->add_option("--advertise", o->advertise, "The IP to announce when listening on 0.0.0.0 (default: the host name's)")->type_name("IP");
  cmd->add_option("--announce", o->announce, "Write 'NODE IP:PORT' into this file once listening")->type_name("FILE");
  cmd->add_option("--announce-dir", o->announce_dir, "... or into DIR/NODE")->type_name("DIR");
  cmd->add_flag("--once", o->once, "Exit after serving one coordinator");
  cmd->callback([&g, o] {
    if (o->node.empty()) o->node = g.settings.slurmd_nodename;
    if (o->node.empty()) o->node = sys::hostname();
    if (auto st = need_root("agent"); !st) {
      g_exit_code = fail(st.error());
      return;
    }
    o->criu_path = g.criu_path();
    auto tier = g.tier();
    if (!tier) {
      g_exit_code = fail(tier.error());
      return;
    }
    o->tier = *tier;
    g_exit_code = coord::run_agent(*o);
  });
}

}  // namespace cryo::cli
