// cryo verify: check checkpoints against their manifests.
#include <fmt/format.h>

#include "cli/common.h"
#include "job/record.h"
#include "store/reader.h"

namespace cryo::cli {

namespace {

int verify(const Globals& g, const std::string& name, std::string id, bool all, bool json) {
  auto dir = open_job(g, name);
  if (!dir) return fail(dir.error());
  recover_with_progress(g, *dir);
  std::vector<std::string> ids;
  if (all) {
    auto r = dir->checkpoint_ids();
    if (!r) return fail(r.error());
    ids = *r;
  } else {
    if (id.empty()) {
      auto latest = dir->latest_id();
      if (!latest) return fail(latest.error());
      id = *latest;
    }
    if (id.empty()) return fail(make_error("job '" + name + "' has no checkpoint to verify"));
    ids.push_back(id);
  }
  int bad = 0;
  nlohmann::json results = nlohmann::json::array();
  for (const auto& i : ids) {
    Progress progress;
    auto st = store::verify(*dir, i, progress.fn());
    // A multi-node job's checkpoint is its parts' checkpoints.
    auto m = st ? dir->load_manifest(i) : Result<store::Manifest>(st.error());
    auto record = m ? job::restore_record(*m) : Result<job::RestoreRecord>(m.error());
    if (st && !record) st = record.error();
    if (st && record->coordinated)
      for (const auto& p : record->parts) {
        st = store::verify(dir->part(p.index), p.checkpoint, progress.fn());
        if (!st) {
          st = st.error().context(fmt::format("part {} of checkpoint {}", p.index, i));
          break;
        }
      }
    progress.finish();
    nlohmann::json r = {{"id", i}, {"ok", st.ok()}};
    if (!st) {
      print_error(st.error());
      r.update(error_json(st.error()));
      bad++;
    } else if (!json) {
      std::printf("checkpoint %s of job '%s': OK\n", i.c_str(), name.c_str());
    }
    results.push_back(r);
  }
  if (json) print_json({{"job", name}, {"checkpoints", results}});
  return bad ? kExitError : 0;
}

}  // namespace

void add_verify_verb(CLI::App& app, Globals& g) {
  struct O {
    std::string name, id;
    bool all = false;
    bool json = false;
  };
  auto o = std::make_shared<O>();
  auto* cmd = add_verb(app, "verify", "Check a checkpoint's signature, and its every byte against its manifest",
      "Check checkpoint ID of job NAME (default: the latest) as a restore would, without\n"
      "restoring it: its manifest's signature with this node's key ($CRYO_KEY or\n"
      "/etc/cryo/key), and every byte of its files in the store (every chunk\n"
      "decompressed and its SHA-256 compared).  A multi-node job's parts are checked\n"
      "too.  Exit status 0 when sound; otherwise the error names what is damaged.");
  cmd->add_option("name", o->name, "Job name")->required()->type_name("NAME");
  cmd->add_option("id", o->id, "Checkpoint ID (default: the latest)")->type_name("ID");
  cmd->add_flag("--all", o->all, "Verify every checkpoint of the job");
  cmd->add_flag("--json", o->json, "Print the result as JSON: each checkpoint, sound or the error");
  cmd->callback([&g, o] {
    g_json_errors = o->json;
    g_exit_code = verify(g, o->name, o->id, o->all, o->json);
  });
}

}  // namespace cryo::cli
