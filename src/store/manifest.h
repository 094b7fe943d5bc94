// The manifest of one checkpoint: what was dumped, where, by which CRIU and
// kernel, and a checksum for every file in the checkpoint directory.
// Stored as manifest.json inside it, written last, before the commit rename.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace cryo::store {

inline constexpr int kManifestFormat = 1;

struct FileSum {
  std::string path;  // relative to the checkpoint directory
  uint64_t size = 0;
  std::string xxh3;  // XXH3-128, hex
};

struct Manifest {
  int format = kManifestFormat;
  std::string job;
  std::string id;  // "0003"
  double created = 0;
  std::string host;
  std::string kernel;
  std::string criu_version;
  std::string cryo_version;
  std::vector<std::string> command;
  std::string cwd;
  double frozen_seconds = 0;
  double dump_seconds = 0;
  uint64_t total_bytes = 0;
  std::vector<FileSum> files;
  // What the job layer needs to restore (output offsets, saved files, pipe
  // identities).  The store keeps it without looking inside.
  nlohmann::json job_state = nlohmann::json::object();
};

nlohmann::json to_json(const Manifest& m);
Result<Manifest> manifest_from_json(const std::string& text, const std::string& where);

}  // namespace cryo::store
