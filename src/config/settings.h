// Settings: everything cryo takes from outside its command line, loaded once
// at the top of each cryo process and passed down.  Nothing below the CLI
// reads the environment or a configuration file.
//
// Each value comes from the first of:
//   1. the command line (applied by the CLI on top of these settings);
//   2. the environment (CRYO_STORE, CRYO_CRIU, ...);
//   3. the site's configuration file: $CRYO_CONFIG, else /etc/cryo/cryo.conf
//      (TOML; docs/admin.md lists every key);
//   4. the built-in default.
//
// The environment also carries what other programs hand cryo: the Slurm
// job it runs in, and the variables CRIU gives its action scripts and an
// MPI launcher gives 'cryo rsh'.  They are read here too, once.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "base/result.h"
#include "slurm/slurm.h"

namespace cryo::config {

using Environment = std::map<std::string, std::string, std::less<>>;

// The process's environment, as it is now.
Environment process_environment();

inline constexpr const char* kDefaultConfigFile = "/etc/cryo/cryo.conf";

// Who the store pattern's {user}, {uid} and {home} stand for.
struct User {
  std::string name;
  uint32_t uid = 0;
  std::string home;
};
// The user this process runs as (its effective uid).
User current_user();
// A user, from the node's user database (name and home; the uid as name
// if it has no entry).
User user_of(uint32_t uid);

struct Settings {
  std::string config_file;  // the configuration file read, "" if there was none

  std::string store;         // the store, its pattern expanded
  std::string store_origin;  // where it came from: "CRYO_STORE", the file's path, or "default"
  std::string criu;          // "" = look for it (criu::default_path)
  std::string fast_tier;     // "" = /dev/shm/cryo; "none" = no fast tier
  std::string fast_tier_size;  // "" = 50%
  std::string key = "/etc/cryo/key";
  int zstd_level = -1;
  int threads = 0;  // 0 = one per CPU
  bool hash_during_dump = false;
  bool stream = true;  // restores may stream the images through FUSE
  double agent_timeout = 600;  // seconds a multi-node phase may take on an agent
  // The socket of cryo's service (cryod), through which a user who is not
  // root runs and restores jobs (src/service/).
  std::string service_socket = "/run/cryo/cryod.sock";
  std::string init;            // the cryo-init to run, "" = beside cryo
  std::string apptainer;       // the apptainer binary, "" = look for it
  std::string log;             // CRYO_LOG: debug logging by module
  std::string fault;           // CRYO_FAULT: fault points, for tests

  std::optional<slurm::Env> slurm;  // the Slurm job this process runs in
  int slurm_nodes = 0;              // SLURM_JOB_NUM_NODES
  std::string slurmd_nodename;      // SLURMD_NODENAME

  // Values other programs pass in the environment: CRIU's action scripts
  // (CRTOOLS_*), and 'cryo rsh' (CRYO_JOB, CRYO_STORE).
  std::string get(const std::string& name) const;
  Environment env;
};

// Loads the settings from `env` and the configuration file it names
// ($CRYO_CONFIG, else kDefaultConfigFile; a missing default file is not an
// error).  A file that does not parse, an unknown key or a value of the
// wrong type is an error that names the file, the line and the key.
Result<Settings> load(const Environment& env, const User& user);

// "{user}", "{uid}" and "{home}" in a store pattern, replaced; an unknown
// "{...}" is an error.
Result<std::string> expand_store_pattern(const std::string& pattern, const User& user);

}  // namespace cryo::config
