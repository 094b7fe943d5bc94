#include "config/settings.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <vector>

#include <fmt/format.h>
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include "base/duration.h"
#include "base/sys.h"

extern char** environ;

namespace cryo::config {

Environment process_environment() {
  Environment env;
  for (char** e = environ; e && *e; e++) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

User current_user() { return user_of(::geteuid()); }

User user_of(uint32_t uid) {
  User u;
  u.uid = uid;
  std::vector<char> buf(16384);
  passwd pw{}, *found = nullptr;
  if (::getpwuid_r(u.uid, &pw, buf.data(), buf.size(), &found) == 0 && found) {
    u.name = pw.pw_name;
    u.home = pw.pw_dir;
  } else {
    u.name = std::to_string(u.uid);
  }
  return u;
}

std::string Settings::get(const std::string& name) const {
  auto it = env.find(name);
  return it == env.end() ? "" : it->second;
}

Result<std::string> expand_store_pattern(const std::string& pattern, const User& user) {
  std::string out;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] != '{') {
      out += pattern[i++];
      continue;
    }
    size_t end = pattern.find('}', i);
    std::string name = pattern.substr(i + 1, end == std::string::npos ? std::string::npos : end - i - 1);
    if (end != std::string::npos && name == "user") out += user.name;
    else if (end != std::string::npos && name == "uid") out += std::to_string(user.uid);
    else if (end != std::string::npos && name == "home") out += user.home;
    else
      return make_error(ErrorKind::config, fmt::format("the store '{}' has an unknown placeholder '{{{}'", pattern,
                                    end == std::string::npos ? name : name + "}"))
          .with_hint("the store's path may contain {user}, {uid} and {home}");
    i = end + 1;
  }
  return out;
}

namespace {

// One key of the file: where it goes, and how its value is read.
struct Key {
  const char* section;
  const char* name;
  std::function<Status(const toml::node&, Settings&)> set;
};

Error bad_value(const std::string& file, const toml::node& n, const std::string& key, const std::string& what) {
  return make_error(ErrorKind::config, fmt::format("{}:{}: '{}' must be {}", file, n.source().begin.line, key, what))
      .with_hint("docs/admin.md lists the keys of cryo.conf and their values");
}

Key string_key(const char* section, const char* name, std::string Settings::*field, const std::string& file) {
  return {section, name, [=](const toml::node& n, Settings& s) -> Status {
            auto v = n.value<std::string>();
            if (!v || !n.is_string()) return bad_value(file, n, std::string(section) + "." + name, "a string");
            s.*field = *v;
            return {};
          }};
}

Result<toml::table> parse_file(const std::string& path) {
  auto r = toml::parse_file(path);
  if (!r) {
    const auto& e = r.error();
    return make_error(ErrorKind::config, fmt::format("{}:{}:{}: {}", path, e.source().begin.line, e.source().begin.column,
                                  e.description()))
        .with_hint("fix the file (TOML; docs/admin.md lists its keys), or point CRYO_CONFIG at another");
  }
  return std::move(r).table();
}

Status read_file(const std::string& path, Settings& s) {
  auto table = parse_file(path);
  if (!table) return table.error();
  std::vector<Key> keys = {
      string_key("store", "path", &Settings::store, path),
      string_key("store", "key", &Settings::key, path),
      {"store", "zstd_level",
       [&](const toml::node& n, Settings& st) -> Status {
         auto v = n.value<int64_t>();
         if (!n.is_integer() || !v || *v == 0 || *v < -7 || *v > 19)
           return bad_value(path, n, "store.zstd_level", "a whole number from -7 to 19, not 0");
         st.zstd_level = static_cast<int>(*v);
         return {};
       }},
      {"store", "threads",
       [&](const toml::node& n, Settings& st) -> Status {
         auto v = n.value<int64_t>();
         if (!n.is_integer() || !v || *v < 0 || *v > 1024)
           return bad_value(path, n, "store.threads", "a whole number from 0 (one per CPU) to 1024");
         st.threads = static_cast<int>(*v);
         return {};
       }},
      {"store", "hash_during_dump",
       [&](const toml::node& n, Settings& st) -> Status {
         if (!n.is_boolean()) return bad_value(path, n, "store.hash_during_dump", "true or false");
         st.hash_during_dump = *n.value<bool>();
         return {};
       }},
      {"store", "stream",
       [&](const toml::node& n, Settings& st) -> Status {
         if (!n.is_boolean()) return bad_value(path, n, "store.stream", "true or false");
         st.stream = *n.value<bool>();
         return {};
       }},
      string_key("fast_tier", "path", &Settings::fast_tier, path),
      string_key("fast_tier", "size", &Settings::fast_tier_size, path),
      string_key("criu", "path", &Settings::criu, path),
      string_key("service", "socket", &Settings::service_socket, path),
      string_key("apptainer", "path", &Settings::apptainer, path),
      {"agent", "timeout",
       [&](const toml::node& n, Settings& st) -> Status {
         auto text = n.value<std::string>();
         auto d = n.is_string() && text ? parse_duration(*text) : Result<double>(make_error(""));
         if (!d) return bad_value(path, n, "agent.timeout", "a duration such as \"10m\"");
         st.agent_timeout = *d;
         return {};
       }},
  };
  for (auto&& [section, node] : *table) {
    const toml::table* t = node.as_table();
    auto known_section = [&] {
      for (const auto& k : keys)
        if (section.str() == k.section) return true;
      return false;
    };
    if (!t || !known_section())
      return make_error(ErrorKind::config, fmt::format("{}:{}: unknown section '{}'", path, node.source().begin.line, section.str()))
          .with_hint("the sections are [store], [fast_tier], [criu], [service], [apptainer] and [agent] (docs/admin.md)");
    for (auto&& [name, value] : *t) {
      const Key* key = nullptr;
      for (const auto& k : keys)
        if (section.str() == k.section && name.str() == k.name) key = &k;
      if (!key)
        return make_error(ErrorKind::config, fmt::format("{}:{}: unknown key '{}' in [{}]", path, value.source().begin.line, name.str(),
                                      section.str()))
            .with_hint("docs/admin.md lists the keys of cryo.conf");
      CRYO_TRY(key->set(value, s));
    }
  }
  return {};
}

int to_int(const std::string& s) { return std::atoi(s.c_str()); }

}  // namespace

Result<Settings> load(const Environment& env, const User& user) {
  Settings s;
  s.env = env;
  auto var = [&](const char* name) { return s.get(name); };

  std::string file = var("CRYO_CONFIG");
  bool named = !file.empty();
  if (!named) file = kDefaultConfigFile;
  if (sys::exists(file)) {
    CRYO_TRY(read_file(file, s));
    s.config_file = file;
  } else if (named) {
    return make_error(ErrorKind::config, "CRYO_CONFIG names '" + file + "', which does not exist")
        .with_hint("unset CRYO_CONFIG to use " + std::string(kDefaultConfigFile) + ", or point it at a file");
  }
  s.store_origin = s.store.empty() ? "default" : file;

  auto take = [&](const char* name, std::string& field) {
    if (std::string v = var(name); !v.empty()) field = v;
  };
  if (std::string v = var("CRYO_STORE"); !v.empty()) {
    s.store = v;
    s.store_origin = "CRYO_STORE";
  }
  take("CRYO_CRIU", s.criu);
  take("CRYO_FAST_TIER", s.fast_tier);
  take("CRYO_FAST_TIER_SIZE", s.fast_tier_size);
  take("CRYO_KEY", s.key);
  take("CRYO_INIT", s.init);
  take("CRYO_SERVICE", s.service_socket);
  take("CRYO_APPTAINER", s.apptainer);
  take("CRYO_LOG", s.log);
  take("CRYO_FAULT", s.fault);
  if (int l = to_int(var("CRYO_ZSTD_LEVEL")); l != 0) s.zstd_level = l;
  if (int t = to_int(var("CRYO_THREADS")); t > 0) s.threads = t;
  if (std::string h = var("CRYO_HASH_DURING_DUMP"); !h.empty()) s.hash_during_dump = h == "1";
  if (std::string h = var("CRYO_STREAM"); !h.empty()) s.stream = h != "0";
  if (double t = std::atof(var("CRYO_AGENT_TIMEOUT").c_str()); t > 0) s.agent_timeout = t;

  if (s.store.empty()) {
    // XDG's data directory, as any user's program keeps its data.
    std::string xdg = var("XDG_DATA_HOME");
    std::string home = var("HOME").empty() ? user.home : var("HOME");
    s.store = !xdg.empty() ? xdg + "/cryo" : (home.empty() ? "/tmp" : home) + "/.local/share/cryo";
  } else {
    auto expanded = expand_store_pattern(s.store, user);
    if (!expanded) return expanded.error();
    s.store = *expanded;
  }

  if (std::string id = var("SLURM_JOB_ID"); !id.empty()) {
    slurm::Env e;
    e.job_id = id;
    e.restart_count = to_int(var("SLURM_RESTART_COUNT"));
    e.nodes = var("SLURM_JOB_NODELIST");
    e.job_name = var("SLURM_JOB_NAME");
    // srun steps carry their step id; the batch script has none.
    e.batch = var("SLURM_STEP_ID").empty();
    s.slurm = e;
  }
  s.slurm_nodes = to_int(var("SLURM_JOB_NUM_NODES"));
  s.slurmd_nodename = var("SLURMD_NODENAME");
  return s;
}

}  // namespace cryo::config
