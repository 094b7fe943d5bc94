// The image store.  One directory per job, one per checkpoint inside it:
//
//   <root>/<job>/job.json          how the job was started (written once)
//   <root>/<job>/state.json        what the supervisor last said about it
//   <root>/<job>/stdout.log ...    the job's output (the job layer's)
//   <root>/<job>/checkpoints/0003/ a committed checkpoint: manifest.json,
//                                  images/, files/, criu-dump.log
//   <root>/<job>/checkpoints/.tmp-0004-<pid>/   one being written
//   <root>/<job>/latest -> checkpoints/0003      the newest committed one
//
// Commit protocol: write everything into .tmp-*, checksum and fsync each
// file, write manifest.json, fsync, rename to its final name, fsync the
// parent, then atomically replace the "latest" link.  A crash at any point
// leaves the previous checkpoint and "latest" intact; leftovers of dead
// writers are removed by the next begin().
//
// Not thread-safe; the job's supervisor lock serialises writers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "store/manifest.h"

namespace cryo::store {

// phase, bytes done, bytes in all (0 if unknown)
using ProgressFn = std::function<void(const std::string& phase, uint64_t done, uint64_t total)>;

// $CRYO_STORE, else $XDG_DATA_HOME/cryo, else ~/.local/share/cryo.
std::string default_root();
// Job names: letters, digits, '.', '_', '-'; not starting with '.'.
Status validate_job_name(const std::string& name);
// Names of the jobs in the store, sorted.  An absent store has none.
Result<std::vector<std::string>> list_jobs(const std::string& root);

struct Pending {
  std::string id;   // the id it will have once committed
  std::string dir;  // where to write it now
};

class JobDir {
 public:
  JobDir(std::string root, std::string name);

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  std::string file(const std::string& rel) const { return path_ + "/" + rel; }
  std::string checkpoint_dir(const std::string& id) const { return path_ + "/checkpoints/" + id; }
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
  Result<Manifest> load_manifest(const std::string& id) const;

  // Starts a new checkpoint directory, after removing leftovers of writers
  // that died.
  Result<Pending> begin();
  // Drops a pending checkpoint.
  void abort(const Pending& p);
  // Checksums and syncs every file of p, writes m (filling files and sizes),
  // renames p into place and points "latest" at it.
  Status commit(const Pending& p, Manifest& m, const ProgressFn& progress = {});
  // Deletes the oldest committed checkpoints so that at most keep remain
  // (keep 0: keep all).  Never deletes the latest.  Returns the removed ids.
  Result<std::vector<std::string>> apply_retention(int keep);
  // Checks every file of a checkpoint against its manifest; the error names
  // the first file that differs.
  Status verify(const std::string& id, const ProgressFn& progress = {}) const;
  Status remove_checkpoint(const std::string& id);
  // Removes the whole job directory.
  Status remove();

 private:
  std::string root_;
  std::string name_;
  std::string path_;
};

}  // namespace cryo::store
