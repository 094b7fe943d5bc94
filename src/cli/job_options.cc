#include "cli/job_options.h"

namespace cryo::cli {

std::vector<std::string> run_args(const JobOptions& o) {
  std::vector<std::string> a;
  auto add = [&](const char* flag, const std::string& v) {
    if (!v.empty()) a.insert(a.end(), {flag, v});
  };
  add("--name", o.name);
  add("--every", o.every);
  if (o.keep >= 0) add("--keep", std::to_string(o.keep));
  if (o.tcp_established) a.push_back("--tcp-established");
  add("--net", o.net);
  add("--ipc", o.ipc);
  if (o.mpi != "auto") add("--mpi", o.mpi);
  add("--podman", o.podman);
  add("--docker", o.docker);
  add("--apptainer", o.apptainer);
  for (const auto& e : o.engine_options) a.push_back("--engine-opt=" + e);
  if (!o.nodes.empty()) {
    std::string list;
    for (const auto& n : o.nodes) list += (list.empty() ? "" : ",") + n;
    a.insert(a.end(), {"--agents", list, "--part-net", o.part_net, "--bridge", o.bridge});
  }
  return a;
}

void add_job_options(CLI::App* cmd, JobOptions& o, const std::string& keep_help) {
  cmd->add_option("--name,-n", o.name, "Job name (default: the command's name and a number; under Slurm slurm-JOBID)")->type_name("NAME");
  cmd->add_option("--every", o.every, "Also checkpoint periodically, e.g. 30s, 10m, 2h")->type_name("DURATION");
  cmd->add_option("--keep", o.keep, "Keep only the newest N checkpoints (" + keep_help + ")")
      ->check([](const std::string& v) { return v.find('-') == 0 ? "must be 0 (keep all) or more" : ""; })->type_name("N");
  cmd->add_flag("--tcp-established", o.tcp_established, "Checkpoint established TCP connections too");
  cmd->add_option("--net", o.net, "Network: 'host' (default) or 'private' (own namespace with loopback only)")->type_name("host|private");
  cmd->add_option("--ipc", o.ipc,
                  "IPC: 'private' (default: its own SysV IPC, /dev/shm and /dev/mqueue, checkpointed with it) or "
                  "'host' (the host's)")
      ->type_name("private|host");
  cmd->add_option("--mpi", o.mpi,
                  "MPI job handling: auto (default: when COMMAND is mpirun or mpiexec), openmpi, mpich or none")->type_name("auto|openmpi|mpich|none");
  cmd->add_option("--podman", o.podman, "Run COMMAND in a Podman container of IMAGE (docs/containers.md)")
      ->type_name("IMAGE");
  cmd->add_option("--docker", o.docker, "Run COMMAND in a Docker container of IMAGE (dockerd with --experimental)")
      ->type_name("IMAGE");
  cmd->add_option("--apptainer", o.apptainer, "Run COMMAND in an Apptainer/Singularity image (a .sif or a sandbox directory)")
      ->type_name("IMAGE");
  cmd->add_option("--engine-opt", o.engine_options,
                  "An option for the engine's 'run', e.g. --engine-opt=-v --engine-opt=/data:/data (repeatable)")
      ->type_name("OPT")
      ->allow_extra_args(false);
  cmd->add_option("--agents", o.nodes,
                  "A multi-node job: the agents ('cryo agent') of its nodes, IP:PORT,... (part k on the k-th), "
                  "or 'slurm': an agent on every node of the Slurm allocation, started with srun (docs/mpi.md)")
      ->delimiter(',')
      ->allow_extra_args(false)->type_name("IP:PORT,...|slurm");
  cmd->add_option("--part-net", o.part_net, "A multi-node job's network: part k at .10+k (default 192.0.2.0/24)")->type_name("CIDR");
  cmd->add_option("--bridge", o.bridge, "The bridge on every node that joins the parts (default cryo0)")->type_name("BRIDGE");
}

}  // namespace cryo::cli
