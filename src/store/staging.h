// Where a checkpoint is dumped before it is durable: the tiers.
//
// The fast tier is node-local storage (tmpfs by default, or an SSD), shared
// by all of cryo's jobs on the node and bounded in size.  A dump goes there
// when it fits, so the job resumes as soon as its memory is copied; a
// flush (store/flush.h) then makes it durable in the store.  When it does
// not fit, the dump goes to the store's own staging directory instead.
//
//   FAST/NAME-KEY/.tmp-0004-PID/   a dump being written   (KEY: 8 hex digits
//   FAST/NAME-KEY/0004/            a complete dump         of the job dir's path)
//   STORE/NAME/staging/0004/       a complete dump that did not fit the fast tier
//
// A complete dump holds images/, files/, criu-dump.log and dump.json (its
// manifest without checksums; written last, then the directory renamed).
// Once committed, a dump in the store's staging is deleted; one in the
// fast tier stays as the job's fast copy, which a restore on this node
// reads instead of the store, until a newer checkpoint replaces it, room
// is needed, or no job here needs it (sweep_fast_tier).  Complete dumps
// from before a reboot are never used.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "store/manifest.h"
#include "store/store.h"

namespace cryo::store {

// What a dump's directory holds, and a restore lays out: CRIU's images,
// CRIU's log of the dump, the copies of the files the job writes
// (job/files.h).
inline constexpr const char* kImagesDir = "images";
inline constexpr const char* kDumpLog = "criu-dump.log";
inline constexpr const char* kSavedFilesDir = "files";
// CRIU's log of a restore of checkpoint id, in the job's CRIU logs
// (JobFile::criu_logs): a new name each time.
std::string restore_log_name(const std::string& id);

struct FastTier {
  std::string root;    // "" = no fast tier
  uint64_t limit = 0;  // bytes all jobs together may keep there

  bool enabled() const { return !root.empty(); }
  // root: as the settings give it (--fast-tier, CRYO_FAST_TIER, cryo.conf),
  // "" for /dev/shm/cryo; "none" turns the tier off.  size: likewise, ""
  // for 50%: bytes with an optional K/M/G/T suffix, or a percentage of the
  // node's memory.
  static Result<FastTier> configure(const std::string& root_opt, const std::string& size_opt);
};

// Directories being removed on a thread of their own; the destructor
// waits for it.
class Removal;

// A dump being written.
struct Pending {
  std::string id;
  std::string dir;   // images/ is inside
  bool fast = false;
  std::string job_dir;  // the job's directory in the store
  bool armed = false;   // dir is the armed directory begin_dump was given, renamed
  // The job's fast copies that this dump replaces, being freed while CRIU
  // starts; done when the last copy of this Pending goes.
  std::shared_ptr<Removal> freeing;
};

// A complete dump.
struct Staged {
  std::string id;
  std::string dir;
  bool fast = false;
};

// The job's directory in the fast tier ("" without one).
std::string fast_dir(const FastTier& tier, const JobDir& job);
// Every directory the job has dumped into in any fast tier, as begin_dump
// notes them in <job>/fast-dirs (fast_dirs below is what callers want).
// Only entries named as this job's fast directory, that are directories of
// ours, count: the list is in the store, which its user may write.
std::vector<std::string> fast_dirs_used(const JobDir& job);
// Where the job's fast copies may be: its directory in this tier first,
// then every other one it used.  A dump made under another --fast-tier is
// still flushed after a crash, restored from, and freed.
std::vector<std::string> fast_dirs(const FastTier& tier, const JobDir& job);

// Starts a dump of about `estimate` bytes: in the fast tier if it fits
// there (counting the job's fast copies of durable checkpoints as free: they
// are moved aside and removed in the background, see Pending::freeing),
// else in the store's staging directory.  Leftovers of dead writers are
// removed first.  The id is one past every id the job has used.
// `armed`: a directory of make_armed_dir, which becomes the dump's if the
// dump goes into the fast tier (Pending::armed).
Result<Pending> begin_dump(const JobDir& job, const FastTier& tier, uint64_t estimate,
                           const std::string& armed = "");
// A dump directory made ahead of the next checkpoint, for a CRIU armed with
// it (criu::Session::arm_dump): ".tmp-arm-N-PID" (images/ inside, a new N
// each time) in the job's fast directory, PID this process;
// remove_leftovers removes it once this process is gone.
Result<std::string> make_armed_dir(const JobDir& job, const FastTier& tier);
// The dump in p is complete: writes base as dump.json and renames p into place.
Result<Staged> end_dump(const Pending& p, const Manifest& base);
void abort_dump(const Pending& p);
// How many failed dumps' CRIU logs a job keeps.
inline constexpr size_t kFailedDumpLogs = 5;
// Before abort_dump of a dump that failed: copies CRIU's log of it into the
// job's CRIU logs as criu-dump-ID-failed-TIME.log, and removes all but the
// newest kFailedDumpLogs of them.  Returns the copy's path, "" if there
// was no log or it could not be copied.
std::string keep_failed_dump_log(const JobDir& job, const Pending& p);
// A new pending dump in the store's staging directory, for a dump that
// failed in the fast tier for lack of room.
Result<Pending> begin_dump_in_store(const JobDir& job, const std::string& id);

// Complete dumps of this boot, oldest first: both tiers, committed or not.
Result<std::vector<Staged>> list_staged(const JobDir& job, const FastTier& tier);
Result<Manifest> load_dump_manifest(const Staged& s);
// Deletes a staged dump (for a fast copy: unless a restore is reading it).
void discard_staged(const Staged& s);

// Removes the .tmp-* and .trash-* entries of dir whose writer is gone;
// returns how many there were.
size_t remove_leftovers(const std::string& dir);

// A complete dump in the fast tier, of any job on this node.
struct FastCopy {
  std::string dir;            // FAST/NAME-KEY/ID
  std::string id;
  std::string store_job_dir;  // the job's directory in its store, as the dump says
  bool durable = false;       // that store holds it committed
  bool stale = false;         // written before this boot: never used
};
// Links in the tier are not followed: a copy is a directory of a directory.
std::vector<FastCopy> list_fast_copies(const FastTier& tier);

// Frees what the fast tier holds for nothing: copies whose job's directory
// is gone from a store that is there, copies from before this boot, and
// durable copies whose job `keep` (given its directory in the store) does
// not need here.  A copy that a restore is reading stays, and so does
// every copy that is not durable while its store is there, or whose store
// cannot be seen.  Returns the copies freed.
std::vector<FastCopy> sweep_fast_tier(const FastTier& tier,
                                      const std::function<bool(const std::string& store_job_dir)>& keep);
// Frees the job's fast copies that are durable (the job leaves this node).
void free_durable_copies(const FastTier& tier, const JobDir& job);

// A restore reading a fast copy holds this (shared) so that no one
// deletes the copy meanwhile.
Result<UniqueFd> hold_copy(const Staged& s, bool wait);

}  // namespace cryo::store
