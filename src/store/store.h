// The image store.  One directory per job, one per checkpoint inside it:
//
//   <root>/<job>/job.json          how the job was started (written once)
//   <root>/<job>/state.json        what the supervisor last said about it
//   <root>/<job>/stdout.log ...    the job's output (the job layer's)
//   <root>/<job>/checkpoints/0003/ a committed checkpoint: manifest.json and
//                                  CRIU's criu-dump.log
//   <root>/<job>/chunks/packs/     the checkpoints' files, as content-
//                                  addressed chunks in packs (store/chunks.h)
//   <root>/<job>/latest -> checkpoints/0003      the newest committed one
//   <root>/<job>/staging/          dumps waiting for their flush (store/staging.h)
//   <root>/<job>/flush.lock        held by the flush (store/flush.h)
//   <root>/<job>/parts/pK/         part K of a multi-node job: a job directory
//
// Every name in a job's directory is given here (JobFile, JobDir's
// accessors), and nowhere else; so is the ".tmp-WHAT-PID" convention of
// work in progress (temp_path).
//
// A checkpoint is dumped into a tier (store/staging.h), then flushed into
// the store (store/flush.h), and read back by store/reader.h.  This file
// holds what they share: names, ids, manifests, retention.
//
// Not thread-safe; the job's supervisor lock and flush lock serialise writers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "store/chunks.h"
#include "store/manifest.h"

namespace cryo::store {

// phase, bytes done, bytes in all (0 if unknown)
using ProgressFn = std::function<void(const std::string& phase, uint64_t done, uint64_t total)>;

// Checkpoint ids: "0001", "0002", ... (fixed width, so they sort).
bool is_checkpoint_id(const std::string& s);
// The store's node-wide settings, set once at the top of the process
// (cli/main.cc, from config/settings.h) and read where they apply.
struct Tuning {
  std::string key_path = "/etc/cryo/key";  // the site's key (store/signing.h)
  int zstd_level = -1;                     // store/flush.h
  bool hash_during_dump = false;           // store/follow.h
  bool stream = true;                      // store/stream.h
};
void configure(const Tuning& t);
const Tuning& tuning();
// Work in progress in `parent`, owned by this process: "PARENT/.tmp-WHAT-PID"
// (renamed into place once complete) and "PARENT/.trash-WHAT-PID" (being
// removed).  remove_leftovers (store/staging.h) removes those whose
// process is gone.
std::string temp_path(const std::string& parent, const std::string& what);
std::string trash_path(const std::string& parent, const std::string& what);
bool is_temporary(const std::string& name);  // ".tmp-..."

// The files of a job's directory that the layers above the store use.
enum class JobFile {
  config,           // job.json: how the job runs and is restored (signed)
  state,            // state.json: what its supervisor last said
  lock,             // the supervisor's flock
  control,          // control.sock: the supervisor's socket
  events,           // cryo.log: the job's event lines
  criu_logs,        // logs/: CRIU's restore logs, and its logs of the latest failed dumps
  init_copy,        // cryo-init: the job's own copy (job/launch.h)
  mpi,              // mpi/: an MPI job's session directories
  agents,           // agents/: where a multi-node job's agents announce themselves
  hostfile,         // hostfile: Open MPI's, for a multi-node job's parts
  container,        // container.json: the container's name, id and log
  container_cut,    // container-cut: where the CRIU hook found the log
  container_stopping,  // container-stopping: the checkpoint stops the container
  blocked_ip,       // blocked-ip: the container's address, dropped until its restore
  criu_conf,        // criu.conf: CRIU's configuration for the engine
  criu_hook,        // criu-hook: CRIU's action script for the engine
  rootfs,           // rootfs/: an Apptainer SIF image, unpacked
  flush_lock,       // flush.lock: held by a flush (store/flush.h)
};

// Job names: letters, digits, '.', '_', '-'; not starting with '.'.
Status validate_job_name(const std::string& name);
// Names of the jobs in the store, sorted.  An absent store has none.
Result<std::vector<std::string>> list_jobs(const std::string& root);
// e, with the fix as its hint where its errno says the store's disk is
// full, read-only, over quota or not the user's to write.
Error store_error(Error e);

// For a user other than root: her store must be hers, and closed to
// everyone else (mode 0700), or it is refused, with the fix.
Status check_store_private(const std::string& root);

class JobDir {
 public:
  JobDir(std::string root, std::string name);

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  std::string file(JobFile f) const;
  // Any other name in the job's directory: for store/ only, which owns the layout.
  std::string store_file(const std::string& rel) const { return path_ + "/" + rel; }
  // stdout.log, stderr.log: the job's output ("stdout", "stderr").
  std::string output_log(const std::string& stream) const { return path_ + "/" + stream + ".log"; }
  std::string checkpoints_dir() const { return path_ + "/checkpoints"; }
  std::string checkpoint_dir(const std::string& id) const { return checkpoints_dir() + "/" + id; }
  std::string manifest_path(const std::string& id) const { return checkpoint_dir(id) + "/manifest.json"; }
  // Part k of a multi-node job: a job directory of its own.
  JobDir part(uint32_t k) const;
  // A multi-node job's output logs: links to part k's.
  Status link_outputs(uint32_t k) const;
  // What the job's checkpoints take on disk: chunks and manifests.
  uint64_t stored_bytes() const;
  bool exists() const;

  // Creates the job's directory (mode 0700).  Fails if the job exists.
  Status create();
  // Fails with a clear message if the job does not exist or belongs to
  // another user (root may use any job).
  Status check_access() const;

  // Committed checkpoints, oldest first.
  Result<std::vector<std::string>> checkpoint_ids() const;
  // The id "latest" points to, or "" if there is none.
  Result<std::string> latest_id() const;
  // The manifest of checkpoint id, unchecked: enough to list or retire it.
  // A restore or verify reads it with load_signed_manifest (store/signing.h).
  Result<Manifest> load_manifest(const std::string& id) const;
  Result<std::string> manifest_text(const std::string& id) const;

  ChunkStore chunks() const { return ChunkStore(path_ + "/chunks"); }

  // The id after every committed one (fixed width).
  Result<std::string> next_id() const;
  // Commits checkpoint m.id, the one way a checkpoint enters the store:
  // makes its directory (checkpoints/.tmp-ID-PID), lets `fill` write its
  // files there (and complete m), writes m signed with the site's key
  // (store/signing.h), with durable_seconds up to now, then renames the
  // directory to checkpoints/ID, syncs, and points "latest" at it.  A
  // failure or crash at any step leaves the previous checkpoint the
  // latest, and no trace of this one but a .tmp- directory of a dead
  // process, which the next flush removes.
  Status commit(Manifest& m, const std::function<Status(const std::string& dir)>& fill = {}) const;

  // Deletes the manifests of the oldest committed checkpoints so that at
  // most keep remain (keep 0: keep all).  Never deletes the latest.
  // Returns the removed ids.  Their chunks stay: store::retain (flush.h)
  // removes what nothing refers to any more.
  Result<std::vector<std::string>> apply_retention(int keep) const;
  Status remove_checkpoint(const std::string& id) const;
  // Removes the whole job directory.
  Status remove();

 private:
  std::string root_;
  std::string name_;
  std::string path_;
};

}  // namespace cryo::store
