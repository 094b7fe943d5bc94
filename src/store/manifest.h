// The manifest of one checkpoint: what was dumped, where, by which CRIU and
// kernel, and for every file of the checkpoint its size and checksums.
// Stored as manifest.json in the checkpoint's directory, written last,
// before the commit rename.
//
// Large files are content-addressed chunks (store/chunks.h): a file's entry
// lists its chunks in order, each as [SHA-256, size, XXH3-128] of its raw
// content followed by where its zstd frame is: [pack, offset, length];
// small ones (CRIU's log) stay whole in the checkpoint directory with their
// SHA-256.  Formats 3 and 4 are signed (store/signing.h); format 3 stored
// each chunk as a file of its own, and is still restored.  Formats 1 (files
// whole, XXH3) and 2 (chunks by XXH3) were not signed: cryo still lists and
// retires such checkpoints, but does not restore them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "store/chunks.h"

namespace cryo::store {

inline constexpr int kManifestFormat = 4;

struct FileSum {
  std::string path;  // relative to the checkpoint
  uint64_t size = 0;
  // A whole file in the checkpoint directory: its SHA-256, hex.
  std::string sha256;
  // A chunked file: its chunks in order (their sizes add up to size).
  bool chunked = false;
  std::vector<ChunkRef> chunks;
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
  double dump_seconds = 0;    // from the request until the dump was complete
  double durable_seconds = 0; // from the request until the commit
  std::string dumped_to;      // "fast" or "store": the tier CRIU wrote to
  uint64_t total_bytes = 0;   // raw bytes of all files
  uint64_t stored_bytes = 0;  // bytes this checkpoint added to the store (new chunks, compressed, and whole files)
  std::vector<FileSum> files;
  // What the job layer needs to restore (output offsets, saved files, pipe
  // identities).  The store keeps it without looking inside.
  nlohmann::json job_state = nlohmann::json::object();
};

// A manifest for checkpoint `id` of `job` begun at `created`, stamped with
// what every checkpoint records: the host, its kernel and this cryo
// (version(), with its revision).
Manifest new_manifest(const std::string& job, const std::string& id, double created);

nlohmann::json to_json(const Manifest& m);
Result<Manifest> manifest_from_json(const std::string& text, const std::string& where);
// The same from parsed JSON (parsed without exceptions: a discarded
// value is reported as damage).
Result<Manifest> manifest_from_json(const nlohmann::json& j, const std::string& where);

// Whether a file (a name, or a path by its last component) is one of
// CRIU's page images, pages-N.img: nearly all of a checkpoint's bytes.
bool is_page_image(const std::string& path);

}  // namespace cryo::store
