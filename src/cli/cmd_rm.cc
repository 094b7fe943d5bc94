// cryo rm: delete a job, or one of its checkpoints.
#include <filesystem>

#include "base/sys.h"
#include "cli/common.h"
#include "job/checkpoint.h"
#include "job/config.h"
#include "job/container.h"
#include "job/mpi.h"
#include "job/supervisor.h"

namespace cryo::cli {

namespace {

int rm(const Globals& g, const std::string& name, const std::string& id, bool json) {
  auto dir = open_job(g, name);
  if (!dir) return fail(dir.error());
  auto lock = job::lock_job(*dir);
  if (!lock) return fail(lock.error().with_hint("stop it first with 'cryo checkpoint " + name + " --stop'"));
  auto tier = g.tier();
  if (!tier) return fail(tier.error());
  if (id.empty()) {
    if (auto c = job::load_config(*dir); c && c->traits().engine_checkpoints) {
      prepare_engine_environment(g);
      job::forget_container(*c, *dir);
    }
    // Fast copies in this command's fast tier, and in any other the job used.
    std::vector<std::string> fast = store::fast_dirs(*tier, *dir);
    if (auto st = dir->remove(); !st) return fail(st.error());
    for (const auto& f : fast) (void)sys::remove_tree(f);
    (void)sys::remove_tree(job::legacy_shm_dir(name));  // left by an older MPI job whose supervisor was killed
    if (json)
      print_json({{"job", name}, {"removed", "job"}});
    else
      std::printf("removed job '%s'\n", name.c_str());
    return 0;
  }
  if (auto m = dir->load_manifest(id); !m && !std::filesystem::exists(dir->checkpoint_dir(id))) return fail(m.error());
  auto latest = dir->latest_id();
  if (latest && *latest == id)
    return fail(make_error("checkpoint " + id + " is the latest of job '" + name + "'; removing it would leave the job without a restore point")
                    .with_hint("remove the whole job with 'cryo rm " + name + "'"));
  if (auto st = dir->remove_checkpoint(id); !st) return fail(st.error());
  // Its chunks that no other checkpoint uses go too.
  if (auto st = job::flush_pending(*dir, *tier, 0, true); !st) return fail(st.error());
  if (json)
    print_json({{"job", name}, {"removed", "checkpoint"}, {"id", id}});
  else
    std::printf("removed checkpoint %s of job '%s'\n", id.c_str(), name.c_str());
  return 0;
}

}  // namespace

void add_rm_verb(CLI::App& app, Globals& g) {
  struct O {
    std::string name, id;
    bool json = false;
  };
  auto o = std::make_shared<O>();
  auto* cmd = add_verb(app, "rm", "Delete a job (not running) or one of its checkpoints");
  cmd->add_option("name", o->name, "Job name")->required()->type_name("NAME");
  cmd->add_option("id", o->id, "Only this checkpoint (not the latest)")->type_name("ID");
  cmd->add_flag("--json", o->json, "Print what was removed as JSON");
  cmd->callback([&g, o] {
    g_json_errors = o->json;
    g_exit_code = rm(g, o->name, o->id, o->json);
  });
}

}  // namespace cryo::cli
