#include "store/manifest.h"

#include "base/json.h"
#include "base/sys.h"
#include "base/version.h"

namespace cryo::store {

namespace {
bool is_hex(const std::string& s, size_t len) {
  return s.size() == len && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}
// "0003-4711-1-2.pack": a plain name in chunks/packs/.
bool is_pack_name(const std::string& s) {
  return s.size() > 5 && s.size() < 200 && s.ends_with(".pack") && s[0] != '.' &&
         s.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz-.") == std::string::npos;
}
}  // namespace

nlohmann::json to_json(const Manifest& m) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : m.files) {
    nlohmann::json e = {{"path", f.path}, {"size", f.size}};
    if (f.chunked) {
      nlohmann::json chunks = nlohmann::json::array();
      for (const auto& c : f.chunks) {
        if (c.pack.empty())
          chunks.push_back({c.hash, c.size, c.xxh3});
        else
          chunks.push_back({c.hash, c.size, c.xxh3, c.pack, c.offset, c.stored});
      }
      e["chunks"] = chunks;
    } else {
      e["sha256"] = f.sha256;
    }
    files.push_back(e);
  }
  return {{"format", m.format},           {"job", m.job},
          {"id", m.id},                   {"created", m.created},
          {"host", m.host},               {"kernel", m.kernel},
          {"criu_version", m.criu_version}, {"cryo_version", m.cryo_version},
          {"command", m.command},         {"cwd", m.cwd},
          {"frozen_seconds", m.frozen_seconds}, {"dump_seconds", m.dump_seconds},
          {"durable_seconds", m.durable_seconds}, {"dumped_to", m.dumped_to},
          {"total_bytes", m.total_bytes}, {"stored_bytes", m.stored_bytes}, {"files", files},
          {"job_state", m.job_state}};
}

bool is_page_image(const std::string& path) {
  size_t at = path.rfind('/') + 1;  // 0 for a bare name
  return path.size() > at + 10 && path.compare(at, 6, "pages-") == 0 && path.compare(path.size() - 4, 4, ".img") == 0;
}

Manifest new_manifest(const std::string& job, const std::string& id, double created) {
  Manifest m;
  m.job = job;
  m.id = id;
  m.created = created;
  m.host = sys::hostname();
  m.kernel = sys::kernel_release();
  m.cryo_version = version();
  return m;
}

Result<Manifest> manifest_from_json(const std::string& text, const std::string& where) {
  return manifest_from_json(nlohmann::json::parse(text, nullptr, false), where);
}

Result<Manifest> manifest_from_json(const nlohmann::json& j, const std::string& where) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorKind::corrupt, "the manifest '" + where + "' is damaged: " + why)
        .with_hint("this checkpoint cannot be trusted; restore an older one with --from, or take a new one");
  };
  if (j.is_discarded() || !j.is_object()) return bad("it is not valid JSON");
  try {
    Manifest m;
    m.format = json_int<int>(j.at("format"));
    if (m.format < 1 || m.format > kManifestFormat)
      return make_error("the manifest '" + where + "' has format " + std::to_string(m.format) +
                        ", which this cryo does not read (it reads 1 to " + std::to_string(kManifestFormat) + ")")
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
    m.durable_seconds = j.value("durable_seconds", 0.0);
    m.dumped_to = j.value("dumped_to", "store");
    m.total_bytes = json_int<uint64_t>(j.at("total_bytes"));
    m.stored_bytes = json_int(j, "stored_bytes", m.total_bytes);
    for (const auto& f : j.at("files")) {
      FileSum s;
      s.path = f.at("path").get<std::string>();
      s.size = json_int<uint64_t>(f.at("size"));
      if (f.contains("chunks")) {
        s.chunked = true;
        uint64_t sum = 0;
        // Format 2 named chunks by their XXH3-128.
        size_t name_len = m.format >= 3 ? 64 : 32;
        for (const auto& c : f.at("chunks")) {
          ChunkRef r;
          r.hash = c.at(0).get<std::string>();
          r.size = json_int<uint32_t>(c.at(1));
          if (m.format >= 3) r.xxh3 = c.at(2).get<std::string>();
          if (!is_hex(r.hash, name_len) || (m.format >= 3 && !is_hex(r.xxh3, 32)))
            return bad("a chunk of " + s.path + " has a malformed hash");
          // Format 4: where in which pack (else a chunk stored by format 3).
          if (m.format >= 4 && c.size() > 3) {
            r.pack = c.at(3).get<std::string>();
            r.offset = json_int<uint64_t>(c.at(4));
            r.stored = json_int<uint32_t>(c.at(5));
            if (!is_pack_name(r.pack) || r.offset % 4096 != 0 || r.stored == 0)
              return bad("a chunk of " + s.path + " has a malformed place: " + c.dump());
          }
          sum += r.size;
          s.chunks.push_back(std::move(r));
        }
        if (sum != s.size) return bad("the chunks of " + s.path + " do not add up to its size");
      } else if (m.format >= 3) {
        s.sha256 = f.at("sha256").get<std::string>();
      }
      if (s.path.empty() || s.path[0] == '/' || s.path.find("..") != std::string::npos)
        return bad("it names a file outside the checkpoint: " + s.path);
      m.files.push_back(std::move(s));
    }
    m.job_state = j.at("job_state");
    return m;
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
}

}  // namespace cryo::store
