// The restore record: what a restore acts on, kept in every checkpoint's
// manifest (store::Manifest::job_state, signed with it) and written and
// read only here.  The store keeps it without looking inside.
//
//   {"version": 2,
//    "outputs": {"stdout": {"size": BYTES, "pipe": "pipe:[INODE]"}, "stderr": ...},
//    "files": [{"path", "saved_as", "size", "mode", "uid", "gid", "fifo"}, ...],
//    "tcp_established": BOOL,
//    "mounts": ["/sys", "/home", ...],                         a job in its own mount namespace
//    "needed": [{"path", "dir", "size", "build_id"}, ...],
//    "cpu_flags": ["sse2", "avx2", ...],
//    "container": {"engine", "log_cut", "blocked_ip"},        a Podman or Docker job
//    "serve_pipe": "pipe:[INODE]", "address": "CIDR",          a part of a multi-node job
//    "coordinated": true, "parts": [{"index", "checkpoint", "node", "agent",
//                                    "address", "bytes"}, ...],
//    "phases": {"prepare": SECONDS, "dump": SECONDS}}         a multi-node job
//
// outputs: each log's size at the checkpoint, to which a restore cuts it,
// and the job's end of its pipe, which a restore hands a new pipe for.
// files: the files the job had open for writing, saved in the checkpoint
// and put back before a restore (job/files.h).  mounts: the host's mounts
// the job's mount namespace had, bound back from the same paths
// (job/mounts.h); without it, the job had the host's mount namespace.
// needed: the files CRIU opens again by path (job/files.h), and
// cpu_flags: the instruction sets of the CPU the job started on, which
// its code may have chosen to use; a restore checks both first
// (job/preflight.h).  Version 2 added mounts, needed and cpu_flags: a cryo that reads only version 1 would restore
// such a job without its namespace.  Checkpoints written before the record
// had a version read as version 1.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "job/files.h"
#include "store/manifest.h"

namespace cryo::job {

inline constexpr int kRecordVersion = 2;

struct OutputCut {
  uint64_t size = 0;
  std::string pipe;  // "pipe:[INODE]"; "" for a container's output, cut by its log
};

struct ContainerCut {
  std::string engine;
  uint64_t log_cut = 0;    // where the container's log stood at the checkpoint
  std::string blocked_ip;  // the container's address, dropped until its restore
};

struct PartRef {
  uint32_t index = 0;
  std::string checkpoint;  // the part's own checkpoint, in STORE/JOB/parts/pINDEX
  std::string node, agent, address;
  uint64_t bytes = 0;
};

struct RestoreRecord {
  int version = kRecordVersion;
  std::map<std::string, OutputCut> outputs;  // "stdout", "stderr"
  std::vector<SavedFile> files;
  bool tcp_established = false;
  std::optional<std::vector<std::string>> mounts;
  std::vector<NeededFile> needed;
  std::vector<std::string> cpu_flags;
  std::optional<ContainerCut> container;
  // A part of a multi-node job: its command pipe, its address.
  std::string serve_pipe;
  std::string address;
  // A multi-node job: its parts' checkpoints, and how long the phases took.
  bool coordinated = false;
  std::vector<PartRef> parts;
  double prepare_seconds = 0, dump_seconds = 0;
};

nlohmann::json to_json(const RestoreRecord& r);
// Checks every field's type: a record that does not parse is an error of
// kind corrupt naming `where`, never an exception.
Result<RestoreRecord> record_from_json(const nlohmann::json& j, const std::string& where);
// The record of a loaded manifest.
Result<RestoreRecord> restore_record(const store::Manifest& m);

}  // namespace cryo::job
