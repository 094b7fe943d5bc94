// cryo: transparent checkpoint and restart for HPC jobs, built on CRIU.
#include <CLI/CLI.hpp>

#include "cli/common.h"

int main(int argc, char** argv) {
  CLI::App app{
      "cryo - transparent checkpoint and restart for Linux jobs, built on CRIU.\n\n"
      "Start a job with 'cryo run', checkpoint it with 'cryo checkpoint', continue it\n"
      "after a crash, a kill or a move to another node with 'cryo restore'.\n"
      "Checkpoints live in a store (--store, $CRYO_STORE, else ~/.local/share/cryo),\n"
      "one directory per job; every byte is checksummed and verified before restore.",
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
      "Environment: CRYO_STORE (store), CRYO_CRIU (CRIU binary), CRYO_LOG (debug logging,\n"
      "e.g. criu:debug,store:info).\n"
      "Exit status: 0 success; 1 error; a job's own status for run and restore;\n"
      "75 when the job was stopped at a checkpoint and can be restored.");
  cryo::cli::Globals g;
  app.add_option("--store", g.store, "Image store directory (default: $CRYO_STORE or ~/.local/share/cryo)");
  app.add_option("--criu", g.criu, "CRIU binary (default: $CRYO_CRIU, /opt/cryo/criu/bin/criu, or criu in PATH)");
  cryo::cli::add_run_verb(app, g);
  cryo::cli::add_sbatch_verb(app, g);
  cryo::cli::add_checkpoint_verb(app, g);
  cryo::cli::add_restore_verb(app, g);
  cryo::cli::add_ls_verb(app, g);
  cryo::cli::add_status_verb(app, g);
  cryo::cli::add_verify_verb(app, g);
  cryo::cli::add_rm_verb(app, g);
  cryo::cli::add_check_verb(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return cryo::cli::g_exit_code;
}
