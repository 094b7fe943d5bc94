// cryo sbatch: submit a command as a Slurm batch job that outlives its time
// limit: checkpointed at the warning signal, requeued, restored.
#include <unistd.h>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "cli/common.h"
#include "cli/job_options.h"

namespace cryo::cli {

namespace {

struct Options : JobOptions {
  std::string margin = "120s";
  std::string signal = "USR1";
  bool print = false;
  bool json = false;
};

// sbatch_args: the options cryo does not know, for sbatch; command: what
// followed "--" (take_sbatch_command).
int sbatch(const Globals& g, const Options& o, const std::vector<std::string>& sbatch_args,
           const std::vector<std::string>& command) {
  if (command.empty())
    return fail(make_error("no command to submit").with_hint("cryo sbatch --time=30:00 -- ./solver input.dat"));
  auto margin = parse_duration(o.margin);
  if (!margin) return fail(margin.error());
  if (*margin < 1) return fail(make_error("--margin must be at least 1s"));

  slurm::BatchSpec spec;
  spec.margin = static_cast<int>(*margin);
  spec.signal = o.signal.rfind("SIG", 0) == 0 ? o.signal.substr(3) : o.signal;
  spec.command = command;
  spec.cryo_path = sys::self_dir() + "/cryo";
  if (!g.store.empty()) spec.cryo_global_args.insert(spec.cryo_global_args.end(), {"--store", g.store_root()});
  if (!g.criu.empty()) spec.cryo_global_args.insert(spec.cryo_global_args.end(), {"--criu", g.criu});
  spec.cryo_args = run_args(o);
  if (!g.fast_tier.empty()) spec.cryo_global_args.insert(spec.cryo_global_args.end(), {"--fast-tier", g.fast_tier});
  if (!g.fast_tier_size.empty())
    spec.cryo_global_args.insert(spec.cryo_global_args.end(), {"--fast-tier-size", g.fast_tier_size});
  std::string script = slurm::batch_script(spec);

  std::vector<std::string> argv = {"sbatch", "--parsable"};
  argv.insert(argv.end(), sbatch_args.begin(), sbatch_args.end());
  if (o.print) {
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
    std::printf("# submit with: %s < this-script\n%s", line.c_str(), script.c_str());
    return 0;
  }
  auto dir = sys::realpath(".");
  auto out = sys::run_command(argv, script);
  if (!out) return fail(Error(out.error()).with_hint("check the sbatch options; 'cryo sbatch --print ...' shows the script"));
  std::string id = out->substr(0, out->find_first_of(";\n"));
  std::string name = o.name.empty() ? "slurm-" + id : o.name;
  if (o.json) {
    print_json({{"slurm_job_id", id}, {"name", name}, {"store", g.store_root()}, {"workdir", dir ? *dir : ""}});
  } else {
    std::printf("Submitted batch job %s as cryo job '%s'\n", id.c_str(), name.c_str());
    std::fprintf(stderr, "cryo: 'cryo status %s' follows it; its checkpoints go to %s/%s\n", name.c_str(),
                 g.store_root().c_str(), name.c_str());
  }
  return 0;
}

}  // namespace

std::vector<char*> take_sbatch_command(const CLI::App& app, int argc, char** argv, std::vector<std::string>* command) {
  std::vector<char*> args(argv, argv + argc);
  // The verb: the first word that is neither an option of cryo's nor an
  // option's value.
  int i = 1;
  while (i < argc && argv[i][0] == '-') {
    const CLI::Option* op = app.get_option_no_throw(argv[i]);
    i += op && op->get_items_expected_max() > 0 ? 2 : 1;
  }
  if (i >= argc || std::string(argv[i]) != "sbatch") return args;
  for (int j = i + 1; j < argc; j++)
    if (std::string(argv[j]) == "--") {
      command->assign(argv + j + 1, argv + argc);
      args.resize(j);
      break;
    }
  return args;
}

void add_sbatch_verb(CLI::App& app, Globals& g, const std::vector<std::string>& command) {
  auto o = std::make_shared<Options>();
  auto* cmd = add_verb(app, "sbatch", "Submit a command as a Slurm job that outlives its time limit",
      "Submit COMMAND to Slurm as a batch job run by 'cryo run'.  The script asks\n"
      "Slurm for the warning signal --margin before the time limit\n"
      "(--signal=B:USR1@MARGIN), --requeue and --open-mode=append.  At the signal\n"
      "cryo checkpoints the job, requeues it and exits; each next allocation\n"
      "restores the latest checkpoint, until the job finishes.  The job's output\n"
      "goes to the Slurm output file, each line once.\n\n"
      "cryo's options come first, then any sbatch options (passed to sbatch as\n"
      "they are; --print and --json may come among them), then -- and the\n"
      "command.  See docs/slurm.md.");
  cmd->prefix_command();
  cmd->fallthrough(false);  // unknown options are sbatch's, not the parent's
  cmd->add_option("--margin", o->margin, "Warning before the time limit, e.g. 120s, 5m (default 120s)")->type_name("DURATION");
  cmd->add_option("--signal", o->signal, "The warning signal (default USR1)")->type_name("SIGNAL");
  add_job_options(cmd, *o, "default 2");
  cmd->add_flag("--print", o->print, "Print the batch script instead of submitting it");
  cmd->add_flag("--json", o->json, "Print the submitted job as JSON");
  cmd->footer(
      "\nExamples:\n"
      "  cryo sbatch --time=30:00 -- ./solver input.dat\n"
      "  cryo sbatch --margin 5m --every 1h --time=24:00:00 -p long -o solver.out -- ./solver big.dat\n"
      "  cryo sbatch --print --time=30:00 -- ./solver input.dat     # show the script");
  cmd->callback([&g, o, cmd, &command] {
    // Parsing stops at sbatch's first option; cryo's flags that no sbatch
    // option shares may still follow it.
    std::vector<std::string> sbatch_args;
    for (auto& a : cmd->remaining()) {
      if (a == "--print") o->print = true;
      else if (a == "--json") o->json = true;
      else sbatch_args.push_back(std::move(a));
    }
    g_json_errors = o->json;
    g_exit_code = sbatch(g, *o, sbatch_args, command);
  });
}

}  // namespace cryo::cli
