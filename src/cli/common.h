// What the verbs share: global options, error printing, progress display,
// finding a job.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "app/context.h"
#include "base/result.h"
#include "cli/help.h"
#include "config/settings.h"
#include "job/config.h"
#include "slurm/slurm.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::cli {

// The global options, over the settings: the use cases' context.
using Globals = app::Context;
using app::need_root;
using app::open_job;
using app::prepare_engine_environment;

// cryo's exit statuses, besides a job's own (run, restore) and
// job::kExitStopped.  Only these: 'cryo run' and 'cryo restore' exit with
// the job's status, which any other number could be; a script that needs
// to know what failed reads the "kind" of the --json error.
inline constexpr int kExitError = 1;   // what failed and how to fix it is on stderr
inline constexpr int kExitUsage = 2;   // arguments that do not parse
inline constexpr int kExitConfig = 78;  // the settings (cryo.conf) are wrong (EX_CONFIG)
inline constexpr int kExitExec = 127;   // the job's command cannot be executed, as a shell says
int exit_status(ErrorKind kind);

// Prints "cryo: error: ..." and its hint on stderr; returns the exit status
// for its kind.  After a verb given --json has set g_json_errors, also
// prints the error on stdout as {"error": MESSAGE, "kind": KIND, "hint":
// HINT}, for scripts that read stdout.
int fail(const Error& e);
extern bool g_json_errors;
// The parts of fail(): the error on stderr, and as JSON.
void print_error(const Error& e);
nlohmann::json error_json(const Error& e);
// app::recover, showing its progress.
void recover_with_progress(const Globals& g, const store::JobDir& dir);
// Prints JSON on stdout.
void print_json(const nlohmann::json& j);

// Shows "phase  done / total" on a terminal, redrawn in place; silent when
// stderr is not a terminal.
class Progress {
 public:
  Progress();
  ~Progress() { finish(); }
  void update(const std::string& phase, uint64_t done, uint64_t total);
  void finish();
  // update() as a store::ProgressFn, for a use case to report through.
  store::ProgressFn fn() {
    return [this](const std::string& phase, uint64_t done, uint64_t total) { update(phase, done, total); };
  }

 private:
  bool tty_;
  bool shown_ = false;
  double last_ = 0;
};

void add_run_verb(CLI::App& app, Globals& g);
// 'cryo sbatch' passes the options it does not know to sbatch, and its
// command follows "--".  CLI11 hands a "--" that no plain word comes before
// back to the parent command ('cryo sbatch --time=30:00 -- ./solver' failed),
// so main takes "--" and the command out of argv before parsing: the
// arguments left to parse, and the command in *command.
std::vector<char*> take_sbatch_command(const CLI::App& app, int argc, char** argv, std::vector<std::string>* command);
void add_sbatch_verb(CLI::App& app, Globals& g, const std::vector<std::string>& command);
void add_checkpoint_verb(CLI::App& app, Globals& g);
void add_restore_verb(CLI::App& app, Globals& g);
void add_ls_verb(CLI::App& app, Globals& g);
void add_status_verb(CLI::App& app, Globals& g);
void add_verify_verb(CLI::App& app, Globals& g);
void add_rm_verb(CLI::App& app, Globals& g);
void add_check_verb(CLI::App& app, Globals& g);
void add_criu_hook_verb(CLI::App& app, Globals& g);
void add_agent_verb(CLI::App& app, Globals& g);
// cryo rsh HOST COMMAND...: Open MPI's rsh agent in a multi-node job.
int rsh_main(int argc, char** argv, const config::Settings& settings);

// The verbs' results, stored by their callbacks and returned by main.
extern int g_exit_code;

}  // namespace cryo::cli
