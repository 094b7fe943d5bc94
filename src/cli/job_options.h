// The options that describe a job, shared by 'cryo run' and 'cryo sbatch'
// (which passes them on to the 'cryo run' of its batch script).
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "app/jobs.h"

namespace cryo::cli {

using JobOptions = app::JobOptions;

// The same options as 'cryo run' arguments.
std::vector<std::string> run_args(const JobOptions& o);

// keep_help: what --keep defaults to for this verb.
void add_job_options(CLI::App* cmd, JobOptions& o, const std::string& keep_help);

}  // namespace cryo::cli
