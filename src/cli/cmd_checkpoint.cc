// cryo checkpoint: ask a running job's supervisor for a checkpoint.
#include <fmt/format.h>

#include "app/jobs.h"
#include "base/duration.h"
#include "cli/common.h"

namespace cryo::cli {

namespace {

struct Options : app::CheckpointRequest {
  bool json = false;
};

int checkpoint(const Globals& g, Options& o) {
  Progress progress;
  o.progress = progress.fn();
  auto done = app::request_checkpoint(g, o);
  progress.finish();
  if (!done) return fail(done.error());
  const control::CheckpointDone& d = *done;
  {
    if (o.json) {
      nlohmann::json j = {{"job", o.name}, {"id", d.id()}, {"bytes", d.bytes()}, {"seconds", d.seconds()},
                          {"frozen_seconds", d.frozen_seconds()}, {"stopped", d.stopped()},
                          {"durable", d.durable()}, {"tier", d.tier()},
                          {"removed", std::vector<std::string>(d.removed().begin(), d.removed().end())},
                          {"path", store::JobDir(g.store_root(), o.name).checkpoint_dir(d.id())}};
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
