#include "job/record.h"

#include <fmt/format.h>

#include "base/json.h"

namespace cryo::job {

namespace {
nlohmann::json to_json(const std::vector<SavedFile>& files) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& f : files)
    a.push_back({{"path", f.path}, {"saved_as", f.saved_as}, {"size", f.size},
                 {"mode", f.mode}, {"uid", f.uid}, {"gid", f.gid}, {"fifo", f.fifo}});
  return a;
}
}  // namespace

nlohmann::json to_json(const RestoreRecord& r) {
  nlohmann::json j = {{"version", r.version}, {"tcp_established", r.tcp_established}};
  nlohmann::json outputs = nlohmann::json::object();
  for (const auto& [name, o] : r.outputs) {
    outputs[name] = {{"size", o.size}};
    if (!o.pipe.empty()) outputs[name]["pipe"] = o.pipe;
  }
  j["outputs"] = outputs;
  j["files"] = to_json(r.files);
  if (r.mounts) j["mounts"] = *r.mounts;
  if (!r.needed.empty()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& f : r.needed) {
      nlohmann::json e = {{"path", f.path}};
      if (f.dir) e["dir"] = true;
      else e["size"] = f.size;
      if (!f.build_id.empty()) e["build_id"] = f.build_id;
      a.push_back(e);
    }
    j["needed"] = a;
  }
  if (!r.cpu_flags.empty()) j["cpu_flags"] = r.cpu_flags;
  if (r.container)
    j["container"] = {{"engine", r.container->engine},
                      {"log_cut", r.container->log_cut},
                      {"blocked_ip", r.container->blocked_ip}};
  if (!r.serve_pipe.empty()) j["serve_pipe"] = r.serve_pipe;
  if (!r.address.empty()) j["address"] = r.address;
  if (r.coordinated) {
    nlohmann::json parts = nlohmann::json::array();
    for (const auto& p : r.parts)
      parts.push_back({{"index", p.index}, {"checkpoint", p.checkpoint}, {"node", p.node}, {"agent", p.agent},
                       {"address", p.address}, {"bytes", p.bytes}});
    j["coordinated"] = true;
    j["parts"] = parts;
    j["phases"] = {{"prepare", r.prepare_seconds}, {"dump", r.dump_seconds}};
  }
  return j;
}

Result<RestoreRecord> record_from_json(const nlohmann::json& j, const std::string& where) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorKind::corrupt, fmt::format("the restore record of {} is damaged: {}", where, why));
  };
  if (!j.is_object()) return bad("not an object");
  RestoreRecord r;
  try {
    r.version = json_int(j, "version", 1);
    if (r.version < 1 || r.version > kRecordVersion)
      return make_error(ErrorKind::corrupt,
                        fmt::format("the restore record of {} has version {}, which this cryo does not read (it "
                                    "reads 1 to {})", where, r.version, kRecordVersion))
          .with_hint("restore it with the cryo that took it, or a newer one");
    if (j.contains("outputs")) {
      if (!j.at("outputs").is_object()) return bad("'outputs' is not an object");
      for (const auto& [name, o] : j.at("outputs").items()) {
        if (name != "stdout" && name != "stderr") return bad("an output named '" + name + "'");
        r.outputs[name] = {json_int<uint64_t>(o.at("size")), o.value("pipe", "")};
      }
    }
    if (j.contains("files")) {
      if (!j.at("files").is_array()) return bad("'files' is not an array");
      for (const auto& f : j.at("files")) {
        SavedFile s{f.at("path").get<std::string>(), f.at("saved_as").get<std::string>(), json_int<uint64_t>(f.at("size")),
                    json_int<mode_t>(f.at("mode")), json_int<uid_t>(f.at("uid")), json_int<gid_t>(f.at("gid")),
                    f.value("fifo", false)};
        // Saved copies live in the checkpoint; the files go back where the job had them.
        // (A named pipe has no copy: it is made again, empty.)
        if (s.saved_as.find("..") != std::string::npos || (s.saved_as.empty() && !s.fifo) ||
            (!s.saved_as.empty() && s.saved_as[0] == '/'))
          return bad("a saved file's copy at '" + s.saved_as + "'");
        if (s.path.empty() || s.path[0] != '/') return bad("a saved file at '" + s.path + "'");
        r.files.push_back(std::move(s));
      }
    }
    r.tcp_established = j.value("tcp_established", false);
    if (j.contains("mounts")) {
      r.mounts = j.at("mounts").get<std::vector<std::string>>();
      // Each is bound back from the node's same path, by CRIU, as root.
      for (const auto& p : *r.mounts)
        if (p.empty() || p[0] != '/' || p.find("/../") != std::string::npos || p.ends_with("/..") ||
            p.find(']') != std::string::npos)
          return bad("a mount at '" + p + "'");
    }
    if (j.contains("container")) {
      const auto& c = j.at("container");
      r.container = ContainerCut{c.at("engine").get<std::string>(), json_int<uint64_t>(c.at("log_cut")),
                                 c.value("blocked_ip", "")};
    }
    if (j.contains("needed"))
      for (const auto& f : j.at("needed")) {
        NeededFile n{f.at("path").get<std::string>(), f.value("dir", false), json_int(f, "size", uint64_t{0}),
                     f.value("build_id", "")};
        if (n.path.empty() || n.path[0] != '/') return bad("a needed file at '" + n.path + "'");
        r.needed.push_back(std::move(n));
      }
    if (j.contains("cpu_flags")) r.cpu_flags = j.at("cpu_flags").get<std::vector<std::string>>();
    r.serve_pipe = j.value("serve_pipe", "");
    r.address = j.value("address", "");
    r.coordinated = j.value("coordinated", false);
    if (r.coordinated) {
      for (const auto& p : j.at("parts"))
        r.parts.push_back({json_int<uint32_t>(p.at("index")), p.at("checkpoint").get<std::string>(), p.value("node", ""),
                           p.value("agent", ""), p.value("address", ""), json_int(p, "bytes", uint64_t{0})});
      if (j.contains("phases")) {
        r.prepare_seconds = j.at("phases").value("prepare", 0.0);
        r.dump_seconds = j.at("phases").value("dump", 0.0);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
  return r;
}

Result<RestoreRecord> restore_record(const store::Manifest& m) {
  return record_from_json(m.job_state, "checkpoint " + m.id + " of job '" + m.job + "'");
}

}  // namespace cryo::job
