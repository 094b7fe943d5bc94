// cryo checkpoint: ask a running job's supervisor for a checkpoint.
#include <unistd.h>

#include <fmt/format.h>

#include "base/duration.h"
#include "cli/common.h"
#include "job/config.h"
#include "job/control.h"
#include "job/supervisor.h"

namespace cryo::cli {

namespace {

struct Options {
  std::string name;
  bool stop = false;
  bool tcp = false;
  bool wait = false;
  bool json = false;
};

// Why a job does not answer: it ended, was stopped, or lost its supervisor.
Error not_running(const store::JobDir& dir) {
  auto st = job::load_state(dir);
  if (!st) return st.error();
  switch (st->state) {
    case job::State::finished:
      return make_error(fmt::format("job '{}' has finished (exit status {}); there is nothing to checkpoint",
                                    dir.name(), st->exit_code));
    case job::State::stopped:
      return make_error(fmt::format("job '{}' is not running: it was {}", dir.name(), st->message))
          .with_hint("continue it with 'cryo restore " + dir.name() + "'");
    case job::State::failed:
      return make_error(fmt::format("job '{}' is not running: {}", dir.name(), st->message))
          .with_hint("continue it from its latest checkpoint with 'cryo restore " + dir.name() + "'");
    case job::State::running:
      break;
  }
  return make_error(fmt::format("job '{}' is not running: its supervisor (pid {} on {}) is gone", dir.name(),
                                st->supervisor_pid, st->host))
      .with_hint("continue it from its latest checkpoint with 'cryo restore " + dir.name() + "'");
}

int checkpoint(const Globals& g, const Options& o) {
  auto dir = open_job(g, o.name);
  if (!dir) return fail(dir.error());
  auto c = job::control_connect(dir->path());
  if (!c) return fail(not_running(*dir));
  control::Request req;
  req.set_version(job::kControlVersion);
  req.mutable_checkpoint()->set_stop(o.stop);
  req.mutable_checkpoint()->set_tcp_established(o.tcp);
  req.mutable_checkpoint()->set_wait(o.wait || o.stop);
  if (auto st = job::send_message(c->get(), req); !st) return fail(st.error());
  Progress progress;
  for (;;) {
    control::Reply r;
    if (auto st = job::recv_message(c->get(), r); !st) {
      progress.finish();
      return fail(make_error("the checkpoint of job '" + o.name + "' ended without an answer (its worker or CRIU was killed)")
                      .with_hint("the job keeps running and earlier checkpoints are unchanged; see " + dir->file(store::JobFile::events)));
    }
    if (r.has_progress()) {
      progress.update(r.progress().phase(), r.progress().done(), r.progress().total());
      continue;
    }
    progress.finish();
    if (r.has_failure()) return fail(job::failure_error(r.failure()));
    if (!r.has_checkpoint()) return fail(make_error("unexpected answer from the job's supervisor"));
    const auto& d = r.checkpoint();
    // A stopped job's supervisor exits right after: wait for it, so that a
    // 'cryo restore' straight after this finds the job free.
    if (d.stopped())
      for (int i = 0; i < 200; i++) {
        if (job::lock_job(*dir)) break;
        ::usleep(50000);
      }
    if (o.json) {
      nlohmann::json j = {{"job", o.name}, {"id", d.id()}, {"bytes", d.bytes()}, {"seconds", d.seconds()},
                          {"frozen_seconds", d.frozen_seconds()}, {"stopped", d.stopped()},
                          {"durable", d.durable()}, {"tier", d.tier()},
                          {"removed", std::vector<std::string>(d.removed().begin(), d.removed().end())},
                          {"path", dir->checkpoint_dir(d.id())}};
      if (d.durable()) {
        j["stored_bytes"] = d.stored_bytes();
        j["durable_seconds"] = d.durable_seconds();
      }
      print_json(j);
    } else if (d.durable()) {
      std::printf("checkpoint %s of job '%s': %s, durable in %s (%s stored), job frozen %s%s\n", d.id().c_str(),
                  o.name.c_str(), format_bytes(static_cast<double>(d.bytes())).c_str(),
                  format_duration(d.durable_seconds()).c_str(), format_bytes(static_cast<double>(d.stored_bytes())).c_str(),
                  format_duration(d.frozen_seconds()).c_str(), d.stopped() ? "; job stopped" : "");
    } else {
      std::printf("checkpoint %s of job '%s': %s taken in %s, job frozen %s; it is being flushed to the store "
                  "('cryo status %s' shows when it is durable)\n", d.id().c_str(), o.name.c_str(),
                  format_bytes(static_cast<double>(d.bytes())).c_str(), format_duration(d.seconds()).c_str(),
                  format_duration(d.frozen_seconds()).c_str(), o.name.c_str());
    }
    return 0;
  }
}

}  // namespace

void add_checkpoint_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<Options>();
  auto* cmd = add_verb(app, "checkpoint", "Checkpoint a running job",
      "Checkpoint the running job NAME.  The job is frozen while CRIU dumps it into the\n"
      "fast tier (node-local memory or SSD, see 'cryo --help'), then resumes, and this\n"
      "command returns.  In the background the dump is compressed, deduplicated against\n"
      "the job's earlier checkpoints, checksummed, synced and committed atomically into\n"
      "the store, where it becomes the job's latest; 'cryo status NAME' shows the flush.\n"
      "With --wait (and always with --stop) the command returns only then.\n\n"
      "If anything fails, the job keeps running and earlier checkpoints are unchanged.\n"
      "One dump runs at a time: a second request meanwhile is refused.");
  cmd->add_option("name", o->name, "Job name")->required()->type_name("NAME");
  cmd->add_flag("--stop", o->stop, "Stop the job once the checkpoint is committed (implies --wait)");
  cmd->add_flag("--wait", o->wait, "Return once the checkpoint is durable in the store, not once it is dumped");
  cmd->add_flag("--tcp-established", o->tcp, "Checkpoint established TCP connections too");
  cmd->add_flag("--json", o->json, "Print the result as JSON");
  cmd->callback([&g, o] {
    g_json_errors = o->json;
    g_exit_code = checkpoint(g, *o);
  });
}

}  // namespace cryo::cli
