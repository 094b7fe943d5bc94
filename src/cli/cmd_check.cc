// cryo check: is this machine ready to checkpoint jobs?  Each item passes
// or says how to fix it.
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "app/context.h"
#include "cli/common.h"
#include "service/service.h"
#include "container/engine.h"
#include "criu/client.h"
#include "job/apptainer.h"
#include "job/launch.h"
#include "job/mpi.h"
#include "slurm/slurm.h"
#include "store/signing.h"
#include "store/staging.h"
#include "store/stream.h"

namespace cryo::cli {

namespace {

struct Item {
  std::string name;
  std::string status;  // "pass", "fail", "warn"
  std::string detail;
  std::string fix;
};

bool in_path(const std::string& cmd) { return !sys::find_in_path(cmd).empty(); }

// Container engines (docs/containers.md): present and able to checkpoint,
// or what is missing.  Needed only for container jobs: never a failure.
void add_containers(std::vector<Item>& items) {
  for (auto kind : {container::Kind::podman, container::Kind::docker}) {
    container::Engine e(kind);
    std::string name = kind == container::Kind::podman ? "Podman" : "Docker";
    if (::geteuid() != 0) {
      items.push_back({name, "info", std::string("--") + e.client() + " jobs are root's alone (the engine checkpoints "
                                                                     "only root's containers); use --apptainer",
                       ""});
      continue;
    }
    if (!in_path(e.client())) {
      items.push_back({name, "info", std::string("not installed (needed for 'cryo run --") + e.client() + "')", ""});
      continue;
    }
    auto v = e.version();
    if (!v) {
      items.push_back({name, "warn", v.error().message, v.error().hint});
    } else if (!in_path("runc")) {
      items.push_back({name, "warn", name + " " + *v + ", but no runc (the runtime that checkpoints with CRIU)",
                       "install Debian's runc package"});
    } else {
      items.push_back({name, "pass",
                       name + " " + *v + " with runc" +
                           (kind == container::Kind::podman ? ": checkpoints with cryo's CRIU"
                                                            : ": dockerd must find CRIU >= 4.2 first in its own PATH"),
                       ""});
    }
  }
  std::string apptainer = job::apptainer_path();
  std::string unsquash = in_path("unsquashfs") ? "" : "; SIF images also need unsquashfs (squashfs-tools)";
  items.push_back({"Apptainer", apptainer.empty() ? "info" : "pass",
                   apptainer.empty() ? "not installed: sandbox directories run without it; SIF images need it" + unsquash
                                     : "images run by cryo itself; SIF images unpacked with " + apptainer + unsquash,
                   apptainer.empty() ? "scripts/install-apptainer.sh" : ""});
}

// What only some jobs need: Slurm for batch jobs, an MPI for MPI jobs.
// Absent is "info", never a failure.
void add_optional(const Globals& g, std::vector<Item>& items) {
  if (!in_path("sbatch") || !in_path("scontrol")) {
    items.push_back({"Slurm", "info", "not installed (needed for 'cryo sbatch' and Slurm batch jobs)",
                     ""});
  } else if (auto ping = sys::run_command({"scontrol", "ping"}); !ping) {
    items.push_back({"Slurm", "warn", "commands found, but no controller answers",
                     "set SLURM_CONF to the cluster's slurm.conf (see docs/slurm.md)"});
  } else {
    std::string where = "controller answers";
    if (const auto& env = g.settings.slurm)
      where += fmt::format("; inside Slurm job {} (restart {})", env->job_id, env->restart_count);
    items.push_back({"Slurm", "pass", where, ""});
    // A requeued job may start on any node: each must find its checkpoints.
    std::string probe = g.store_root();
    while (!sys::exists(probe) && probe.find('/') != std::string::npos) probe = probe.substr(0, probe.rfind('/'));
    if (auto fs = sys::fs_space(probe.empty() ? "/" : probe); fs && !fs->shared)
      items.push_back({"shared store", "warn",
                       g.store_root() + " is on this node's own disk: a Slurm job requeued onto another node will not "
                                        "find its checkpoints there",
                       "set the store on a file system every node mounts, for every user at once in " +
                           std::string(config::kDefaultConfigFile) +
                           ": [store] path = \"/shared/cryo/{user}\" (docs/admin.md)"});
  }
  std::vector<std::string> mpis;
  for (const char* launcher : {"mpirun", "mpiexec.openmpi", "mpiexec.mpich", "mpiexec"}) {
    if (!in_path(launcher)) continue;
    std::string m = job::mpi_name(job::detect_mpi({launcher}));
    if (m != "none" && std::find(mpis.begin(), mpis.end(), m) == mpis.end()) mpis.push_back(m);
  }
  std::string found;
  for (const auto& m : mpis) found += (found.empty() ? "" : ", ") + m;
  items.push_back({"MPI", mpis.empty() ? "info" : "pass",
                   mpis.empty() ? "no Open MPI or MPICH launcher in PATH (needed only for MPI jobs)"
                                : found + " (cryo run sets MPI jobs up itself; see docs/mpi.md)",
                   ""});
  add_containers(items);
}

int check(const Globals& g, bool json) {
  std::vector<Item> items;
  items.push_back({"kernel", "pass", "Linux " + sys::kernel_release(), ""});
  bool cr = sys::exists("/proc/sys/kernel/ns_last_pid");
  items.push_back({"checkpoint/restore in kernel", cr ? "pass" : "fail",
                   cr ? "CONFIG_CHECKPOINT_RESTORE is set" : "CONFIG_CHECKPOINT_RESTORE is not set",
                   cr ? "" : "use a kernel built with CONFIG_CHECKPOINT_RESTORE=y"});
  bool pidns = sys::exists("/proc/self/ns/pid");
  items.push_back({"PID namespaces", pidns ? "pass" : "fail", pidns ? "available" : "missing",
                   pidns ? "" : "use a kernel built with CONFIG_PID_NS=y"});
  // CRIU needs root: a user's jobs run and restore through cryo's service.
  bool root = ::geteuid() == 0;
  if (root) {
    items.push_back({"privileges", "pass", "running as root", ""});
  } else {
    Status up = service::reachable(g.settings.service_socket);
    items.push_back({"service", up ? "pass" : "fail",
                     up ? "not root: your jobs run and restore through cryo's service at " + g.settings.service_socket
                        : up.error().message,
                     up ? "" : up.error().hint});
  }
  std::string criu_path = g.criu_path();
  auto v = criu::probe(criu_path);
  if (v && !root) {
    items.push_back({"CRIU", "pass", "CRIU " + v->text() + " at " + criu_path + " (the service runs it as root)", ""});
  } else if (v) {
    items.push_back({"CRIU", "pass", "CRIU " + v->text() + " at " + criu_path, ""});
    auto s = criu::Session::start(criu_path);
    Status ck = s ? s->check() : Status(s.error());
    items.push_back({"CRIU kernel check", ck ? "pass" : "fail", ck ? "criu check: looks good" : ck.error().message,
                     ck ? "" : "run '" + criu_path + " check' and see its errors"});
  } else {
    items.push_back({"CRIU", "fail", v.error().message, v.error().hint});
  }
  items.push_back({"settings", "pass",
                   g.settings.config_file.empty()
                       ? "no " + std::string(config::kDefaultConfigFile) + "; the environment and built-in defaults"
                       : g.settings.config_file,
                   ""});
  std::string init = job::default_init_path();
  bool init_ok = ::access(init.c_str(), X_OK) == 0;
  items.push_back({"cryo-init", init_ok ? "pass" : "fail", init, init_ok ? "" : "install cryo-init next to cryo, or set CRYO_INIT"});
  std::string root_dir = g.store_root();
  std::string probe_dir = root_dir;
  while (!sys::exists(probe_dir) && probe_dir.find('/') != std::string::npos) probe_dir = probe_dir.substr(0, probe_dir.rfind('/'));
  if (probe_dir.empty()) probe_dir = "/";
  struct statvfs vfs;
  if (::statvfs(probe_dir.c_str(), &vfs) == 0) {
    double free_b = static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize);
    bool ro = vfs.f_flag & ST_RDONLY;
    bool writable = !ro && ::access(probe_dir.c_str(), W_OK) == 0;
    // A user's store must be hers alone (store::check_store_private).
    Status mine = sys::exists(root_dir) ? store::check_store_private(root_dir) : Status{};
    if (!mine)
      items.push_back({"store", "fail", mine.error().message, mine.error().hint});
    else
      items.push_back({"store", writable ? "pass" : "fail",
                       fmt::format("{} ({} free; from {})", root_dir, format_bytes(free_b),
                                   g.store.empty() ? g.settings.store_origin : "--store"),
                       writable ? "" : "choose a writable store with --store, CRYO_STORE or [store] path in " +
                                           std::string(config::kDefaultConfigFile)});
  }
  // The key that signs checkpoints (store/signing.h): made at the first
  // checkpoint when there is none.
  std::string key = store::key_path();
  if (!sys::exists(key)) {
    items.push_back({"signing key", "info",
                     key + " does not exist yet: the first checkpoint makes it; nodes that restore each other's "
                           "checkpoints need the same one",
                     ""});
  } else if (::geteuid() != 0) {
    // Only root reads it: the service signs and checks for users.
    auto st = sys::stat(key);
    bool closed = st && !(st->st_mode & 077);
    items.push_back({"signing key", closed ? "pass" : "fail",
                     closed ? key + " (root's alone; the service signs and checks your checkpoints with it)"
                            : key + " can be read by users other than root",
                     closed ? "" : "ask the admin to 'chmod 600 " + key + "' and make a new key: it may have leaked"});
  } else if (auto k = store::SigningKey::load(key, false)) {
    items.push_back({"signing key", "pass", key + " (key " + k->id() + ")", ""});
  } else {
    items.push_back({"signing key", "fail", k.error().message, k.error().hint});
  }
  // The fast tier is optional: without one, dumps go straight to the store.
  if (auto tier = g.tier(); !tier) {
    items.push_back({"fast tier", "fail", tier.error().message, tier.error().hint});
  } else if (!tier->enabled()) {
    items.push_back({"fast tier", "info", "none: checkpoints are dumped straight into the store", ""});
  } else if (auto space = sys::fs_space(tier->root)) {
    std::string what = fmt::format("{} ({}, up to {}; {} free)", tier->root, space->tmpfs ? "memory" : "disk",
                                   format_bytes(static_cast<double>(tier->limit)),
                                   format_bytes(static_cast<double>(space->available)));
    // A tmpfs with small pages takes CRIU twice as long to dump into, and
    // cryo three times as long to read back and free (bench/NOTES.md).
    auto m = sys::mount_of(tier->root);
    bool huge = m && (m->options.find("huge=within_size") != std::string::npos ||
                      m->options.find("huge=always") != std::string::npos);
    if (!space->tmpfs || huge)
      items.push_back({"fast tier", "pass", what + (huge ? ", huge pages" : ""), ""});
    else
      items.push_back({"fast tier", "warn", what + ": small pages, so dumps into it take up to twice as long",
                       "as root, while no job keeps a fast copy there: mount -t tmpfs -o "
                       "huge=within_size,size=50%,mode=1777 cryo-fast " + tier->root +
                           " (scripts/mount-fast-tier.sh in cryo's sources does this)"});
  }
  // What the fast tier holds, once what it held for nothing is freed.
  if (auto tier = g.tier(); tier && tier->enabled()) {
    auto freed = app::tidy_fast_tier(g);
    auto copies = store::list_fast_copies(*tier);
    uint64_t bytes = 0;
    std::string which;
    for (const auto& c : copies) {
      bytes += sys::tree_size(c.dir);
      std::string job = c.store_job_dir.substr(c.store_job_dir.rfind('/') + 1);
      if (c.store_job_dir.rfind(g.store_root() + "/", 0) != 0) job = c.store_job_dir;  // another store's
      which += fmt::format("{}{} {}{}", which.empty() ? "" : ", ", job, c.id, c.durable ? "" : " (not yet durable)");
    }
    std::string what = copies.empty() ? "none" : fmt::format("{}, {}: {}", copies.size(), format_bytes(static_cast<double>(bytes)), which);
    if (!freed.empty()) what += fmt::format("; freed {} that no job here needed", freed.size());
    items.push_back({"fast copies", "info", what, ""});
  }
  // A restore streams its images to CRIU (store/stream.h).
  if (Status st = store::ImageStream::available())
    items.push_back({"streamed restores", "pass",
                     "FUSE: a restore streams the images to CRIU, from the store or the fast copy", ""});
  else
    items.push_back({"streamed restores", "warn",
                     "no FUSE (" + st.error().message +
                         "): a restore from the store lays its files out first and reads them twice, and one from "
                         "the fast copy pays a page fault per 4 KiB of the job's memory",
                     "load the fuse module (modprobe fuse), and run cryo as root"});
  add_optional(g, items);
  bool ok = true;
  for (const auto& i : items) ok &= i.status != "fail";
  if (json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& i : items) a.push_back({{"name", i.name}, {"status", i.status}, {"detail", i.detail}, {"fix", i.fix}});
    print_json({{"ok", ok}, {"checks", a}});
  } else {
    for (const auto& i : items) {
      std::printf("%-4s  %-30s %s\n", i.status.c_str(), i.name.c_str(), i.detail.c_str());
      if (!i.fix.empty()) std::printf("      %-30s fix: %s\n", "", i.fix.c_str());
    }
    std::printf(ok ? "\nready: jobs on this machine can be checkpointed and restored\n"
                   : "\nnot ready: fix the items marked 'fail' above\n");
  }
  return ok ? 0 : 1;
}

}  // namespace

void add_check_verb(CLI::App& app, Globals& g) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = add_verb(app, "check", "Check the kernel, CRIU and store: each item a pass or a fix",
      "Check that this machine can checkpoint and restore jobs: kernel, privileges,\n"
      "CRIU (version and 'criu check'), cryo-init, the store, the key that signs\n"
      "checkpoints ($CRYO_KEY or /etc/cryo/key) and the fast tier.  Each\n"
      "item passes or fails with its fix; exit status 0 when nothing fails.  Slurm,\n"
      "MPI and the container engines (Podman, Docker, Apptainer), which only some jobs\n"
      "need, are reported too ('info' when absent), never as failures.");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([&g, json] {
    g_json_errors = *json;
    g_exit_code = check(g, *json);
  });
}

}  // namespace cryo::cli
