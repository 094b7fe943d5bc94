// The options that describe a job, shared by 'cryo run' and 'cryo sbatch'
// (which passes them on to the 'cryo run' of its batch script).
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace cryo::cli {

struct JobOptions {
  std::string name;
  std::string every;
  int keep = -1;  // -1: not given
  bool tcp_established = false;
  std::string net;  // "" = host
  std::string mpi = "auto";
  std::string podman, docker, apptainer;  // the image, in that engine
  std::vector<std::string> engine_options;
  std::vector<std::string> nodes;  // a multi-node job's agents, or {"slurm"}
  std::string part_net = "192.0.2.0/24";
  std::string bridge = "cryo0";

  // The same options as 'cryo run' arguments.
  std::vector<std::string> to_args() const;
};

// keep_help: what --keep defaults to for this verb.
void add_job_options(CLI::App* cmd, JobOptions& o, const std::string& keep_help);

}  // namespace cryo::cli
