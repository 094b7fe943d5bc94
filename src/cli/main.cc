// cryo: transparent checkpoint and restart for HPC jobs, built on CRIU.
#include <unistd.h>

#include <csignal>

#include <map>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/fault.h"
#include "base/identity.h"
#include "base/log.h"
#include "base/parallel.h"
#include "base/sys.h"
#include "base/version.h"
#include "cli/common.h"
#include "cli/help.h"
#include "coord/wire.h"
#include "criu/client.h"
#include "job/control.h"
#include "job/launch.h"
#include "slurm/slurm.h"
#include "service/service.h"
#include "store/manifest.h"
#include "store/store.h"

namespace {

// The settings, once, and what the layers below take from them.
cryo::Result<cryo::config::Settings> load_settings(const cryo::config::Environment& env, const cryo::config::User& user) {
  auto s = cryo::config::load(env, user);
  if (!s) return s;
  cryo::log::configure(s->log);
  cryo::set_fault_points(s->fault);
  cryo::set_default_threads(s->threads);
  cryo::store::configure({s->key, s->zstd_level, s->hash_during_dump, s->stream});
  cryo::job::configure({s->init, s->apptainer});
  cryo::sys::set_search_path(s->get("PATH"));
  return s;
}

// The global options that only the site chooses for a cryo that the
// service runs as root: they name what runs as root, and where.
cryo::Status check_site_options(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--") break;
    for (const char* opt : {"--criu", "--fast-tier", "--fast-tier-size"})
      if (a == opt || a.rfind(std::string(opt) + "=", 0) == 0)
        return cryo::make_error(cryo::ErrorKind::denied, std::string(opt) + " is the site's to choose: cryo's service runs "
                                                         "CRIU and the fast tier as root")
            .with_hint("leave it out; the admin sets it in " + std::string(cryo::config::kDefaultConfigFile));
  }
  return {};
}

// A cryo that the service (src/service/) started for a user: CRYO_ACT_FOR
// names her, and fd CRYO_JOB_ENV_FD holds her job's environment.  This
// process acts for her from now on (base/identity.h); its settings are the
// service's environment with her home, and the site's cryo.conf.
struct Acting {
  cryo::config::User user;
  std::vector<std::string> job_env;
};
cryo::Result<Acting> act_for_caller(cryo::config::Environment& env) {
  auto who = cryo::Identity::parse(env["CRYO_ACT_FOR"]);
  if (!who) return who.error();
  if (::geteuid() != 0)
    return cryo::make_error(cryo::ErrorKind::usage, "CRYO_ACT_FOR is set only by cryo's service, which runs as root")
        .with_hint("unset it");
  Acting a;
  int fd = std::atoi(env["CRYO_JOB_ENV_FD"].c_str());
  auto text = cryo::sys::read_all(fd, "the job's environment");
  if (!text) return text.error();
  ::close(fd);
  for (size_t p = 0; p < text->size();) {
    size_t end = text->find('\0', p);
    if (end == std::string::npos) end = text->size();
    a.job_env.push_back(text->substr(p, end - p));
    p = end + 1;
  }
  CRYO_TRY(cryo::act_for(*who));
  a.user = cryo::config::user_of(who->uid);
  // Her Slurm job, from her environment, once Slurm says it is hers: the
  // supervisor treats it as its allocation (its time limit, its requeue).
  // The cluster's own SLURM_CONF stays the service's.
  std::map<std::string, std::string> slurm;
  for (const auto& e : a.job_env) {
    auto eq = e.find('=');
    std::string k = e.substr(0, eq);
    if (eq != std::string::npos && (k.rfind("SLURM_", 0) == 0 || k == "SLURMD_NODENAME") && k != "SLURM_CONF")
      slurm[k] = e.substr(eq + 1);
  }
  if (slurm.count("SLURM_JOB_ID")) {
    const std::string& id = slurm["SLURM_JOB_ID"];
    auto owner = cryo::slurm::job_owner(id);
    if (!owner)
      return owner.error().context("cannot tell whose Slurm job " + id + " is");
    if (*owner != who->uid)
      return cryo::make_error(cryo::ErrorKind::denied, "Slurm job " + id + " is not yours")
          .with_hint("run cryo in your own Slurm job");
    for (const auto& [k, v] : slurm) env[k] = v;
  }
  env.erase("CRYO_ACT_FOR");
  env.erase("CRYO_JOB_ENV_FD");
  env.erase("XDG_DATA_HOME");
  env["HOME"] = a.user.home;
  return a;
}

bool asks_for_help(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--") break;
    if (a == "-h" || a == "--help" || a == "--version") return true;
  }
  return false;
}

// What 'cryo --version' prints: the build, the CRIU this node would use,
// and the formats and protocols it speaks.
std::string version_text(const cryo::cli::Globals& g) {
  std::string criu = g.criu_path();
  auto v = cryo::criu::probe(criu);
  return fmt::format(
      "cryo {} (revision {})\n{}\nmanifest format {}, control protocol {}, coordination protocol {}\nsettings: {}",
      cryo::release(), cryo::revision(),
      v ? "CRIU " + v->text() + " at " + criu : "CRIU: " + v.error().message, cryo::store::kManifestFormat,
      cryo::job::kControlVersion, cryo::coord::kVersion,
      g.settings.config_file.empty() ? "no " + std::string(cryo::config::kDefaultConfigFile) : g.settings.config_file);
}

// The verb that argv names (service::verb_of), if it is not one of app's:
// its options that take a value are skipped, so 'cryo --store S bogus' names "bogus".
std::string unknown_verb(const CLI::App& app, int argc, char** argv) {
  std::string verb = cryo::service::verb_of({argv + 1, argv + argc});
  if (verb.empty()) return "";
  auto known = app.get_subcommands([&](const CLI::App* sub) { return sub->get_name() == verb; });
  return known.empty() ? verb : "";
}

}  // namespace

int main(int argc, char** argv) {
  auto env = cryo::config::process_environment();
  std::optional<Acting> acting;
  if (env.count("CRYO_ACT_FOR")) {
    auto a = act_for_caller(env);
    if (!a) return cryo::cli::fail(a.error());
    if (auto st = check_site_options(argc, argv); !st) return cryo::cli::fail(st.error());
    acting = std::move(*a);
  }
  auto settings = load_settings(env, acting ? acting->user : cryo::config::current_user());
  bool rsh = argc > 1 && std::string(argv[1]) == "rsh";
  // A broken cryo.conf stops every verb, but not the help that explains it.
  if (!settings && (rsh || !asks_for_help(argc, argv))) return cryo::cli::fail(settings.error());
  if (rsh) return cryo::cli::rsh_main(argc, argv, *settings);
  // A user who is not root runs and restores jobs through cryo's service.
  if (::geteuid() != 0 && cryo::service::served_verb(cryo::service::verb_of({argv + 1, argv + argc})) && !asks_for_help(argc, argv)) {
    std::vector<std::string> args(argv + 1, argv + argc);
    // Slurm signals the batch script's own process: this one, which
    // forwards the signal, must be it.
    if (settings->slurm && settings->slurm->batch && cryo::service::verb_of(args) == "run")
      if (std::string hazard = cryo::slurm::shell_hazard(SIGUSR1); !hazard.empty())
        std::fprintf(stderr, "cryo: warning: %s\n", hazard.c_str());
    std::vector<std::string> job_env;
    for (const auto& [k, v] : env) job_env.push_back(k + "=" + v);
    auto status = cryo::service::run_through_service(settings->service_socket, args, job_env);
    return status ? *status : cryo::cli::fail(status.error());
  }
  CLI::App app{
      "cryo: transparent checkpoint and restart for Linux jobs, built on CRIU.\n"
      "A job started with 'cryo run' can be checkpointed at any moment and continued\n"
      "with 'cryo restore', after a crash, a kill, a time limit, or on another node.",
      "cryo"};
  app.formatter(std::make_shared<cryo::cli::HelpFormatter>());
  app.require_subcommand(1);
  app.fallthrough();
  cryo::cli::Globals g;
  if (settings) g.settings = std::move(*settings);
  if (acting) g.job_env = std::move(acting->job_env);
  app.set_version_flag("--version", [&g] { return version_text(g); });
  app.add_option("--store", g.store, "The store of checkpoints (default: $CRYO_STORE, cryo.conf's [store] path,\n"
                                     "else ~/.local/share/cryo)")
      ->type_name("DIR");
  app.add_option("--criu", g.criu, "CRIU (default: $CRYO_CRIU, cryo.conf, /opt/cryo/criu/bin/criu, criu in PATH)")
      ->type_name("PATH");
  app.add_option("--fast-tier", g.fast_tier,
                 "Node-local memory or SSD that takes dumps first; 'none': straight into the store\n"
                 "(default: $CRYO_FAST_TIER, cryo.conf, /dev/shm/cryo)")
      ->type_name("DIR");
  app.add_option("--fast-tier-size", g.fast_tier_size,
                 "Most the fast tier may hold, all jobs together: bytes with K/M/G/T, or a share of\n"
                 "memory such as 25% (default: $CRYO_FAST_TIER_SIZE, cryo.conf, 50%)")
      ->type_name("SIZE");
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
  // After the verbs: CLI11 copies a footer into the verbs made after it.
  app.footer(
      "\nExamples:\n"
      "  cryo run --name sim --every 30m --keep 3 -- ./solver input.dat\n"
      "  cryo checkpoint sim            # the job keeps running\n"
      "  cryo restore sim               # continue from the latest checkpoint\n"
      "  cryo check                     # is this machine ready?\n\n"
      "Settings: /etc/cryo/cryo.conf, then CRYO_* variables, then options (man cryo;\n"
      "docs/admin.md).  'cryo VERB --help' shows a verb's options and examples.\n"
      "Exit status: 0 success; 1 error; 2 wrong usage; 78 a wrong cryo.conf; run and\n"
      "restore exit with the job's status, 75 when it stopped at a checkpoint.");
  if (std::string verb = unknown_verb(app, argc, argv); !verb.empty()) {
    std::fprintf(stderr, "cryo: '%s' is not a cryo verb; 'cryo --help' lists them\n", verb.c_str());
    return cryo::cli::kExitUsage;
  }
  try {
    std::vector<char*> args = cryo::cli::take_sbatch_command(app, argc, argv, &sbatch_command);
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    // --help and --version end parsing with status 0; the rest are usage errors.
    return app.exit(e) == 0 ? 0 : cryo::cli::kExitUsage;
  }
  // After any verb that deals with jobs (not the agent's or CRIU's hook,
  // which serve others, nor 'check', which tidies before it reports): what
  // the node's fast tier holds for nothing goes.
  for (const auto* sub : app.get_subcommands())
    if (sub->get_name() != "agent" && sub->get_name() != "criu-hook" && sub->get_name() != "check")
      (void)cryo::app::tidy_fast_tier(g);
  return cryo::cli::g_exit_code;
}
