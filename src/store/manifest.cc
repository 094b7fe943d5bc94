#include "store/manifest.h"

namespace cryo::store {

nlohmann::json to_json(const Manifest& m) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : m.files) files.push_back({{"path", f.path}, {"size", f.size}, {"xxh3", f.xxh3}});
  return {{"format", m.format},           {"job", m.job},
          {"id", m.id},                   {"created", m.created},
          {"host", m.host},               {"kernel", m.kernel},
          {"criu_version", m.criu_version}, {"cryo_version", m.cryo_version},
          {"command", m.command},         {"cwd", m.cwd},
          {"frozen_seconds", m.frozen_seconds}, {"dump_seconds", m.dump_seconds},
          {"total_bytes", m.total_bytes}, {"files", files},
          {"job_state", m.job_state}};
}

Result<Manifest> manifest_from_json(const std::string& text, const std::string& where) {
  auto bad = [&](const std::string& why) {
    return make_error("the manifest '" + where + "' is damaged: " + why)
        .with_hint("this checkpoint cannot be trusted; restore an older one with --from, or take a new one");
  };
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("it is not valid JSON");
  try {
    Manifest m;
    m.format = j.at("format").get<int>();
    if (m.format != kManifestFormat)
      return make_error("the manifest '" + where + "' has format " + std::to_string(m.format) +
                        ", which this cryo does not read (it reads " + std::to_string(kManifestFormat) + ")")
          .with_hint("use the cryo version that wrote this checkpoint");
    m.job = j.at("job").get<std::string>();
    m.id = j.at("id").get<std::string>();
    m.created = j.at("created").get<double>();
    m.host = j.at("host").get<std::string>();
    m.kernel = j.at("kernel").get<std::string>();
    m.criu_version = j.at("criu_version").get<std::string>();
    m.cryo_version = j.at("cryo_version").get<std::string>();
    m.command = j.at("command").get<std::vector<std::string>>();
    m.cwd = j.at("cwd").get<std::string>();
    m.frozen_seconds = j.at("frozen_seconds").get<double>();
    m.dump_seconds = j.at("dump_seconds").get<double>();
    m.total_bytes = j.at("total_bytes").get<uint64_t>();
    for (const auto& f : j.at("files"))
      m.files.push_back({f.at("path").get<std::string>(), f.at("size").get<uint64_t>(), f.at("xxh3").get<std::string>()});
    m.job_state = j.at("job_state");
    return m;
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
}

}  // namespace cryo::store
