// cryo run: start a job under supervision.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "cli/common.h"
#include "criu/client.h"
#include "job/config.h"
#include "job/launch.h"
#include "job/supervisor.h"

namespace cryo::cli {

namespace {

struct RunOptions {
  std::string name;
  std::string every;
  int keep = 0;
  std::string checkpoint_on;
  bool tcp_established = false;
  std::string net = "host";
  bool tee = false;
  bool quiet = false;
  std::vector<std::string> command;
};

std::string pick_name(const std::string& root, const std::string& cmd) {
  std::string base = cmd.substr(cmd.rfind('/') + 1);
  std::string clean;
  for (char c : base) clean += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  if (clean.empty() || clean[0] == '.') clean = "job";
  for (int i = 1;; i++) {
    std::string n = fmt::format("{}-{}", clean.substr(0, 50), i);
    if (!store::JobDir(root, n).exists()) return n;
  }
}

int run(const Globals& g, RunOptions& o) {
  job::JobConfig c;
  c.command = o.command;
  if (!o.every.empty()) {
    auto d = parse_duration(o.every);
    if (!d) return fail(d.error());
    c.every = *d;
  }
  if (o.keep < 0) return fail(make_error("--keep must be 0 (keep all) or more"));
  c.keep = o.keep;
  if (!o.checkpoint_on.empty()) {
    std::string n = o.checkpoint_on.rfind("SIG", 0) == 0 ? o.checkpoint_on.substr(3) : o.checkpoint_on;
    bool known = false;
    for (int s = 1; s < NSIG; s++)
      if (const char* a = sigabbrev_np(s); a && n == a && s != SIGKILL && s != SIGSTOP && s != SIGCHLD) known = true;
    if (!known) return fail(make_error("unknown or unusable signal '" + o.checkpoint_on + "'").with_hint("use a name such as USR1, USR2 or HUP"));
    c.checkpoint_on = n;
  }
  if (o.net != "host" && o.net != "private")
    return fail(make_error("--net must be 'host' or 'private', not '" + o.net + "'"));
  c.private_net = o.net == "private";
  c.tcp_established = o.tcp_established;

  // A job that cannot be checkpointed is worth refusing before it starts.
  std::string criu_path = g.criu_path();
  if (auto v = criu::probe(criu_path); !v) return fail(v.error());

  std::string root = g.store_root();
  c.name = o.name.empty() ? pick_name(root, o.command[0]) : o.name;
  store::JobDir dir(root, c.name);
  if (auto st = dir.create(); !st) return fail(st.error());
  auto cwd = sys::realpath(".");
  c.cwd = cwd ? *cwd : "/";
  c.created = sys::now();
  c.uid = ::getuid();
  c.host = sys::hostname();
  if (auto st = job::save_config(dir, c); !st) {
    (void)dir.remove();
    return fail(st.error());
  }
  auto lock = job::lock_job(dir);
  if (!lock) return fail(lock.error());

  job::LaunchSpec spec;
  spec.command = c.command;
  spec.job_name = c.name;
  spec.private_net = c.private_net;
  spec.init_path = job::default_init_path();
  auto launched = job::launch(spec);
  if (!launched) {
    (void)dir.remove();
    int code = fail(launched.error());
    return launched.error().code == ENOENT || launched.error().code == EACCES ? 127 : code;
  }
  job::Supervised s;
  s.dir = &dir;
  s.config = c;
  s.state.job_pid = launched->pid;
  s.criu_path = criu_path;
  s.lock = std::move(*lock);
  s.quiet = o.quiet;
  for (auto [name, fd, tee] : {std::tuple{"stdout", &launched->out, 1}, std::tuple{"stderr", &launched->err, 2}}) {
    auto out = job::open_output(dir.path(), name, std::move(*fd), o.tee ? tee : -1);
    if (!out) {
      ::kill(launched->pid, SIGKILL);
      return fail(out.error());
    }
    s.outputs.push_back(std::move(*out));
  }
  job::event(dir, fmt::format("job '{}' started (pid {}); output in {}/stdout.log and stderr.log", c.name,
                              launched->pid, dir.path()), o.quiet);
  return job::supervise(std::move(s));
}

}  // namespace

void add_run_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Start a job under cryo's supervision");
  cmd->description(
      "Start COMMAND as a checkpointable job and supervise it until it ends.\n\n"
      "The job runs in its own PID namespace under a small init, in its own session,\n"
      "so that a restore never collides with PIDs in use.  Its stdout and stderr go\n"
      "to STORE/NAME/stdout.log and stderr.log.  cryo stays in the foreground and\n"
      "exits with the job's exit status (75 if the job was stopped at a checkpoint).\n"
      "Signals sent to cryo (TERM, INT, HUP, USR1, ...) are forwarded to the job,\n"
      "except the --checkpoint-on signal.");
  cmd->add_option("--name,-n", o->name, "Job name (default: the command's name and a number)");
  cmd->add_option("--every", o->every, "Checkpoint periodically, e.g. 30s, 10m, 2h");
  cmd->add_option("--keep", o->keep, "Keep only the newest N checkpoints (default 0: keep all)");
  cmd->add_option("--checkpoint-on", o->checkpoint_on, "Checkpoint when cryo receives this signal, e.g. USR1");
  cmd->add_flag("--tcp-established", o->tcp_established, "Checkpoint established TCP connections too");
  cmd->add_option("--net", o->net, "Network: 'host' (default) or 'private' (own namespace with loopback only)");
  cmd->add_flag("--tee", o->tee, "Also copy the job's output to cryo's stdout and stderr");
  cmd->add_flag("--quiet,-q", o->quiet, "Print no event lines (they still go to STORE/NAME/cryo.log)");
  cmd->add_option("command", o->command, "The command to run, after --")->required()->expected(-1);
  cmd->footer("\nExample:\n  cryo run --name sim --every 30m --keep 3 -- ./solver input.dat");
  cmd->callback([&g, o] { g_exit_code = run(g, *o); });
}

}  // namespace cryo::cli
