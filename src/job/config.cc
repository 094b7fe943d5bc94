#include "job/config.h"

#include <nlohmann/json.hpp>

#include "base/sys.h"
#include "store/signing.h"

namespace cryo::job {

const char* state_name(State s) {
  switch (s) {
    case State::running: return "running";
    case State::finished: return "finished";
    case State::stopped: return "stopped";
    case State::failed: return "failed";
  }
  return "?";
}

namespace {
Result<nlohmann::json> load_json(const std::string& path) {
  auto text = sys::read_file(path);
  if (!text) return text.error();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("'" + path + "' is damaged: not valid JSON");
  return j;
}
}  // namespace

const KindTraits& kind_traits(Kind k) {
  static const KindTraits process{"", false, false}, apptainer{"apptainer", false, true},
      podman{"podman", true, false}, docker{"docker", true, false};
  switch (k) {
    case Kind::process: return process;
    case Kind::apptainer: return apptainer;
    case Kind::podman: return podman;
    case Kind::docker: return docker;
  }
  return process;
}

Result<Kind> parse_kind(const std::string& name) {
  for (Kind k : {Kind::process, Kind::apptainer, Kind::podman, Kind::docker})
    if (name == kind_traits(k).name) return k;
  return make_error(ErrorKind::corrupt, "unknown kind of job '" + name + "'");
}

Status save_config(const store::JobDir& dir, const JobConfig& c) {
  nlohmann::json j = {{"name", c.name},   {"command", c.command}, {"cwd", c.cwd},
                      {"created", c.created}, {"uid", c.uid}, {"gid", c.gid}, {"groups", c.groups}, {"host", c.host},
                      {"every", c.every}, {"keep", c.keep},       {"checkpoint_on", c.checkpoint_on},
                      {"tcp_established", c.tcp_established}, {"private_net", c.private_net},
                      {"private_ipc", c.private_ipc}, {"mpi", c.mpi == Mpi::none ? "" : mpi_name(c.mpi)}, {"slurm_job_id", c.slurm_job_id},
                      {"engine", c.traits().name}, {"image", c.image}, {"engine_options", c.engine_options},
                      {"nodes", c.nodes}, {"nodes_from_slurm", c.nodes_from_slurm}, {"part_net", c.part_net},
                      {"bridge", c.bridge}, {"cpu_flags", c.cpu_flags}};
  auto key = store::SigningKey::load(store::key_path(), true);
  if (!key) return key.error();
  key->sign(j);
  return sys::write_file_atomic(dir.file(store::JobFile::config), j.dump(2) + "\n", 0600);
}

Result<JobConfig> load_config(const store::JobDir& dir, bool signed_only) {
  auto j = load_json(dir.file(store::JobFile::config));
  if (!j) return j.error();
  if (signed_only)
    CRYO_TRY(store::check_signed(*j, "the settings of job '" + dir.name() + "' (" + dir.file(store::JobFile::config) + ")",
                                 "they say how the job is restored; put back the ones cryo wrote, or start the job anew"));
  try {
    JobConfig c;
    c.name = j->at("name");
    c.command = j->at("command").get<std::vector<std::string>>();
    c.cwd = j->at("cwd");
    c.created = j->at("created");
    c.uid = j->at("uid");
    c.gid = j->value("gid", gid_t{0});
    c.groups = j->value("groups", std::vector<gid_t>{});
    c.host = j->at("host");
    c.every = j->at("every");
    c.keep = j->at("keep");
    c.checkpoint_on = j->at("checkpoint_on");
    c.tcp_established = j->at("tcp_established");
    c.private_net = j->at("private_net");
    c.slurm_job_id = j->value("slurm_job_id", "");
    c.private_ipc = j->value("private_ipc", false);
    if (std::string mpi = j->value("mpi", ""); !mpi.empty()) {
      auto m = parse_mpi(mpi);
      if (!m) return m.error().context("'" + dir.file(store::JobFile::config) + "'");
      c.mpi = *m;
    }
    auto kind = parse_kind(j->value("engine", ""));
    if (!kind) return kind.error().context("'" + dir.file(store::JobFile::config) + "'");
    c.kind = *kind;
    c.image = j->value("image", "");
    c.engine_options = j->value("engine_options", std::vector<std::string>{});
    c.nodes = j->value("nodes", std::vector<std::string>{});
    c.part_net = j->value("part_net", "");
    c.nodes_from_slurm = j->value("nodes_from_slurm", false);
    c.bridge = j->value("bridge", "");
    c.cpu_flags = j->value("cpu_flags", std::vector<std::string>{});
    return c;
  } catch (const nlohmann::json::exception& e) {
    return make_error("'" + dir.file(store::JobFile::config) + "' is damaged: " + e.what());
  }
}

Status save_state(const store::JobDir& dir, const JobState& s) {
  nlohmann::json j = {{"state", state_name(s.state)}, {"host", s.host},
                      {"supervisor_pid", s.supervisor_pid}, {"job_pid", s.job_pid},
                      {"since", s.since}, {"exit_code", s.exit_code},
                      {"restores", s.restores}, {"restored_from", s.restored_from},
                      {"message", s.message}};
  nlohmann::json allocations = nlohmann::json::array();
  for (const auto& a : s.allocations)
    allocations.push_back({{"job_id", a.job_id}, {"restart", a.restart}, {"nodes", a.nodes}, {"host", a.host}, {"start", a.start},
                           {"end", a.end}, {"restored_from", a.restored_from}, {"outcome", a.outcome},
                           {"checkpoint_seconds", a.checkpoint_seconds}, {"margin_seconds", a.margin_seconds}});
  j["allocations"] = allocations;
  return sys::write_file_atomic(dir.file(store::JobFile::state), j.dump(2) + "\n", 0600);
}

Result<JobState> load_state(const store::JobDir& dir) {
  if (!sys::exists(dir.file(store::JobFile::state))) return JobState{};
  auto j = load_json(dir.file(store::JobFile::state));
  if (!j) return j.error();
  try {
    JobState s;
    std::string st = j->at("state");
    s.state = st == "finished" ? State::finished : st == "stopped" ? State::stopped
              : st == "failed" ? State::failed : State::running;
    s.host = j->at("host");
    s.supervisor_pid = j->at("supervisor_pid");
    s.job_pid = j->at("job_pid");
    s.since = j->at("since");
    s.exit_code = j->at("exit_code");
    s.restores = j->at("restores");
    s.restored_from = j->at("restored_from");
    s.message = j->at("message");
    for (const auto& a : j->value("allocations", nlohmann::json::array())) {
      Allocation al;
      al.job_id = a.value("job_id", "");
      al.restart = a.at("restart");
      al.nodes = a.at("nodes");
      al.host = a.at("host");
      al.start = a.at("start");
      al.end = a.at("end");
      al.restored_from = a.at("restored_from");
      al.outcome = a.at("outcome");
      al.checkpoint_seconds = a.at("checkpoint_seconds");
      al.margin_seconds = a.at("margin_seconds");
      s.allocations.push_back(al);
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    return make_error("'" + dir.file(store::JobFile::state) + "' is damaged: " + e.what());
  }
}

}  // namespace cryo::job
