// cryo: transparent checkpoint and restart for HPC jobs, built on CRIU.
#include <CLI/CLI.hpp>

#include "base/fault.h"
#include "base/log.h"
#include "base/parallel.h"
#include "cli/common.h"
#include "job/launch.h"
#include "store/store.h"

namespace {

// The settings, once, and what the layers below take from them.
cryo::Result<cryo::config::Settings> load_settings() {
  auto s = cryo::config::load(cryo::config::process_environment(), cryo::config::current_user());
  if (!s) return s;
  cryo::log::configure(s->log);
  cryo::set_fault_points(s->fault);
  cryo::set_default_threads(s->threads);
  cryo::store::configure({s->key, s->zstd_level, s->hash_during_dump});
  cryo::job::configure({s->init, s->apptainer});
  return s;
}

bool asks_for_help(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--") break;
    if (a == "-h" || a == "--help" || a == "--version") return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  auto settings = load_settings();
  // A broken cryo.conf stops every verb, but not the help that explains it.
  if (!settings && !asks_for_help(argc, argv)) return cryo::cli::fail(settings.error());
  if (argc > 1 && std::string(argv[1]) == "rsh") return cryo::cli::rsh_main(argc, argv, *settings);
  CLI::App app{
      "cryo - transparent checkpoint and restart for Linux jobs, built on CRIU.\n\n"
      "Start a job with 'cryo run', checkpoint it with 'cryo checkpoint', continue it\n"
      "after a crash, a kill or a move to another node with 'cryo restore'.\n"
      "Checkpoints live in a store (--store, $CRYO_STORE, else ~/.local/share/cryo),\n"
      "one directory per job, compressed and deduplicated; every byte is checksummed\n"
      "and verified before restore.  A checkpoint is first dumped into a fast tier of\n"
      "node-local storage (--fast-tier, default /dev/shm/cryo), so the job resumes at\n"
      "once, and flushed into the store in the background.",
      "cryo"};
  app.set_version_flag("--version", CRYO_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(
      "\nExamples:\n"
      "  cryo run --name sim --every 30m --keep 3 -- ./solver input.dat\n"
      "  cryo checkpoint sim            # the job keeps running\n"
      "  cryo checkpoint sim --stop     # checkpoint, then stop the job\n"
      "  cryo restore sim               # continue from the latest checkpoint\n"
      "  cryo check                     # is this machine ready?\n\n"
      "Environment: CRYO_STORE (store), CRYO_CRIU (CRIU binary), CRYO_FAST_TIER and\n"
      "CRYO_FAST_TIER_SIZE (as the options), CRYO_ZSTD_LEVEL (compression, default -1),\n"
      "CRYO_THREADS (how many CPUs compression and verification use, default all),\n"
      "CRYO_HASH_DURING_DUMP=1 (hash memory while CRIU dumps it: durable sooner, the\n"
      "job frozen a little longer; see docs/performance.md),\n"
      "CRYO_KEY (the key that signs checkpoints, default /etc/cryo/key; the same on\n"
      "every node that restores another's checkpoints), CRYO_LOG (debug logging, e.g.\n"
      "criu:debug,store:info).\n"
      "Exit status: 0 success; 1 error; 2 wrong usage; a job's own status for run and\n"
      "restore; 75 when the job was stopped at a checkpoint and can be restored.");
  cryo::cli::Globals g;
  if (settings) g.settings = std::move(*settings);
  app.add_option("--store", g.store, "Image store directory (default: $CRYO_STORE or ~/.local/share/cryo)");
  app.add_option("--criu", g.criu, "CRIU binary (default: $CRYO_CRIU, /opt/cryo/criu/bin/criu, or criu in PATH)");
  app.add_option("--fast-tier", g.fast_tier,
                 "Node-local directory that takes dumps before they are flushed to the store: a tmpfs or\n"
                 "local SSD; 'none' dumps straight into the store (default: $CRYO_FAST_TIER or /dev/shm/cryo)");
  app.add_option("--fast-tier-size", g.fast_tier_size,
                 "Most the fast tier may hold, all jobs together: bytes with K/M/G/T, or a share of memory\n"
                 "such as 25% (default: $CRYO_FAST_TIER_SIZE or 50%)");
  cryo::cli::add_run_verb(app, g);
  std::vector<std::string> sbatch_command;
  cryo::cli::add_sbatch_verb(app, g, sbatch_command);
  cryo::cli::add_checkpoint_verb(app, g);
  cryo::cli::add_restore_verb(app, g);
  cryo::cli::add_ls_verb(app, g);
  cryo::cli::add_status_verb(app, g);
  cryo::cli::add_verify_verb(app, g);
  cryo::cli::add_rm_verb(app, g);
  cryo::cli::add_check_verb(app, g);
  cryo::cli::add_criu_hook_verb(app, g);
  cryo::cli::add_agent_verb(app, g);
  try {
    std::vector<char*> args = cryo::cli::take_sbatch_command(app, argc, argv, &sbatch_command);
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    // --help and --version end parsing with status 0; the rest are usage errors.
    return app.exit(e) == 0 ? 0 : 2;
  }
  return cryo::cli::g_exit_code;
}
