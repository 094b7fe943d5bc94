#include "coord/part.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <fmt/format.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/sys.h"
#include "criu/client.h"
#include "job/checkpoint.h"
#include "job/files.h"
#include "job/launch.h"
#include "job/preflight.h"
#include "job/restore.h"
#include "store/flush.h"
#include "store/reader.h"
#include "store/signing.h"

namespace cryo::coord {

namespace {

Status ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = sys::run_command(argv);
  if (!r) return r.error();
  return {};
}

Status in_netns(const std::string& ns, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip", "netns", "exec", ns};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = sys::run_command(argv);
  if (!r) return r.error();
  return {};
}

// The lock's rules: a chain each way that lets only loopback through.
Status add_lock(const std::string& ns) {
  for (auto [chain, base, dir] : {std::tuple{"CRYO-LOCK-IN", "INPUT", "-i"}, std::tuple{"CRYO-LOCK-OUT", "OUTPUT", "-o"}}) {
    (void)in_netns(ns, {"iptables", "-w", "-N", chain});
    CRYO_TRY(in_netns(ns, {"iptables", "-w", "-F", chain}));
    CRYO_TRY(in_netns(ns, {"iptables", "-w", "-A", chain, dir, "lo", "-j", "ACCEPT"}));
    CRYO_TRY(in_netns(ns, {"iptables", "-w", "-A", chain, "-j", "DROP"}));
    CRYO_TRY(in_netns(ns, {"iptables", "-w", "-I", base, "-j", chain}));
  }
  return {};
}

// Everything in the namespace's filter table goes: ours, and whatever a
// CRIU killed halfway left behind.  The namespace is the part's alone.
void drop_rules(const std::string& ns) {
  (void)in_netns(ns, {"iptables", "-w", "-F"});
  (void)in_netns(ns, {"iptables", "-w", "-X"});
}

}  // namespace

PartNet::PartNet(const Part& p) : part_(p) {
  name_ = fmt::format("cryo-{}-p{}", p.job(), p.index());
  std::string key = p.job() + "/" + std::to_string(p.index());
  veth_ = fmt::format("cr{:08x}", static_cast<uint32_t>(XXH3_64bits(key.data(), key.size())));
}

Status PartNet::create() const {
  remove();
  CRYO_TRY(ip({"netns", "add", name_}));
  auto fail = [&](const Error& e) {
    remove();
    return e.context("cannot create the network of part " + std::to_string(part_.index()));
  };
  if (auto st = ip({"link", "add", veth_, "type", "veth", "peer", "name", "eth0", "netns", name_}); !st) return fail(st.error());
  if (auto st = ip({"link", "set", veth_, "master", part_.bridge(), "up"}); !st)
    return fail(st.error().with_hint("create the bridge '" + part_.bridge() + "' on every node first (docs/mpi.md)"));
  for (const auto& args : std::vector<std::vector<std::string>>{{"-n", name_, "addr", "add", part_.address(), "dev", "eth0"},
                                                                {"-n", name_, "link", "set", "eth0", "up"},
                                                                {"-n", name_, "link", "set", "lo", "up"}})
    if (auto st = ip(args); !st) return fail(st.error());
  return {};
}

void PartNet::remove() const {
  (void)ip({"netns", "del", name_});
  (void)ip({"link", "del", veth_});
}

Status PartNet::lock() {
  if (guard_ > 0) return {};
  CRYO_TRY(add_lock(name_));
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("cannot create the lock's pipe");
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t pid = ::fork();
  if (pid < 0) {
    drop_rules(name_);
    return sys_error("cannot start the lock's guard");
  }
  if (pid == 0) {
    // The guard: while the agent keeps the pipe open the lock stays; when
    // it closes it, or dies, the guard lifts the lock.
    // It keeps nothing else of the agent's open (a lock, a listening socket).
    ::dup2(rd.get(), 3);
    ::syscall(SYS_close_range, 4, ~0U, 0);
    ::setpgid(0, 0);
    char c;
    while (::read(3, &c, 1) != 0) {
    }
    drop_rules(name_);
    ::_exit(0);
  }
  guard_ = pid;
  guard_pipe_ = std::move(wr);
  return {};
}

void PartNet::unlock() {
  if (guard_ <= 0) return;
  guard_pipe_.reset();
  ::waitpid(guard_, nullptr, 0);
  guard_ = -1;
}

PartRuntime::PartRuntime(const Part& p, store::FastTier tier, std::string criu_path)
    : part_(p),
      tier_(std::move(tier)),
      criu_path_(std::move(criu_path)),
      dir_(store::JobDir(p.store(), p.job()).part(p.index())),
      net_(p) {}

PartRuntime::~PartRuntime() { stop(); }

Status PartRuntime::start(const StartPart& s) {
  // The coordinator may have made the part's directory (its MPI session) already.
  CRYO_TRY(sys::mkdir_p(dir_.checkpoints_dir(), 0700));
  CRYO_TRY(net_.create());
  int serve[2];
  if (::pipe2(serve, O_CLOEXEC) < 0) return sys_error("cannot create the part's command pipe");
  UniqueFd serve_r(serve[0]), serve_w(serve[1]);
  job::LaunchSpec spec;
  spec.command.assign(s.command().begin(), s.command().end());
  spec.job_name = part_.job();
  spec.private_ipc = true;
  spec.netns = net_.path();
  spec.hostname = fmt::format("{}-p{}", part_.job(), part_.index());
  spec.serve_fd = serve_r.get();
  spec.init_dir = dir_.path();
  spec.init_path = job::make_job_init(dir_);
  spec.env.assign(s.env().begin(), s.env().end());
  if (s.has_cwd() && ::chdir(s.cwd().c_str()) < 0) return sys_error("cannot change to " + s.cwd());
  auto launched = job::launch(spec);
  if (!launched) {
    net_.remove();
    return launched.error();
  }
  pid_ = launched->pid;
  serve_ = std::move(serve_w);
  for (auto [name, fd] : {std::pair{"stdout", &launched->out}, std::pair{"stderr", &launched->err}}) {
    auto o = job::open_output(dir_, name, std::move(*fd), part_.tee() ? (std::string(name) == "stdout" ? 1 : 2) : -1);
    if (!o) return o.error();
    outputs_.push_back(std::move(*o));
  }
  return {};
}

Status PartRuntime::spawn(const std::vector<std::string>& argv) {
  if (!serve_.valid() || pid_ <= 0) return make_error("part " + std::to_string(part_.index()) + " is not running");
  std::string body;
  for (const auto& a : argv) body += a + '\0';
  uint32_t len = static_cast<uint32_t>(body.size());
  std::string msg(reinterpret_cast<const char*>(&len), 4);
  msg += body;
  if (msg.size() > 4096) return make_error("the command to start in part " + std::to_string(part_.index()) + " is too long");
  return sys::write_all(serve_.get(), msg, "part " + std::to_string(part_.index()) + "'s command pipe");
}

std::vector<int> PartRuntime::output_fds() const {
  std::vector<int> fds;
  for (const auto& o : outputs_)
    if (!o.eof) fds.push_back(o.pipe.get());
  return fds;
}

void PartRuntime::drain() {
  for (auto& o : outputs_)
    if (!o.eof && !job::drain(o)) o.eof = true;
}

Result<DumpResult> PartRuntime::dump(bool tcp) {
  if (pid_ <= 0) return make_error("part " + std::to_string(part_.index()) + " is not running");
  auto ns = sys::stat(net_.path());
  if (!ns) return ns.error();
  job::DumpSpec s;
  s.dir = &dir_;
  s.manifest_job = part_.job() + "/p" + std::to_string(part_.index());
  s.config = &config_;
  s.tier = tier_;
  s.job_pid = pid_;
  for (auto& o : outputs_) s.outputs.push_back(&o);
  s.criu_path = criu_path_;
  s.tcp_established = tcp;
  // The part's network namespace is the agent's, made again at a restore.
  s.external = {fmt::format("net[{}]:part-net", ns->st_ino)};
  s.at_post_dump = [&](job::RestoreRecord& record) -> Status {
    auto serve = sys::fstat(serve_.get(), "the part's command pipe");
    if (!serve) return serve.error();
    record.serve_pipe = "pipe:[" + std::to_string(serve->st_ino) + "]";
    record.address = part_.address();
    return {};
  };
  s.post_dump_fault = "agent.post_dump";
  s.quiet = true;
  auto dumped = job::dump_job(s);
  if (!dumped) return dumped.error();
  std::string id = dumped->manifest.id;
  store::FlushOptions opts;
  opts.digests = &dumped->digests;
  auto flushed = store::flush(dir_, tier_, opts, true);
  if (!flushed) return flushed.error();
  if (!sys::exists(dir_.manifest_path(id)))
    return make_error("part " + std::to_string(part_.index()) + "'s checkpoint " + id + " was not committed");
  last_checkpoint_ = id;
  auto committed = dir_.load_manifest(id);
  DumpResult r;
  r.checkpoint = id;
  r.bytes = committed ? committed->total_bytes : 0;
  r.stored_bytes = committed ? committed->stored_bytes : 0;
  r.frozen_seconds = dumped->manifest.frozen_seconds;
  return r;
}

Status PartRuntime::verify() {
  if (last_checkpoint_.empty()) return make_error("part " + std::to_string(part_.index()) + " has no checkpoint to verify");
  return store::verify(dir_, last_checkpoint_);
}

void PartRuntime::abort() {
  if (!last_checkpoint_.empty()) {
    // The job's checkpoint was never committed: this part's is no use.
    (void)dir_.remove_checkpoint(last_checkpoint_);
    (void)store::flush(dir_, tier_, {}, true);  // its chunks go
    last_checkpoint_.clear();
  }
  net_.unlock();
}

void PartRuntime::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  drain();
  outputs_.clear();
  serve_.reset();
  net_.unlock();
  // A part restored from an older checkpoint kept its shared-memory files
  // on the node's /dev/shm: its checkpoints hold their contents.
  (void)sys::remove_tree(legacy_shm_dir());
  net_.remove();
}

namespace {

// The part's checkpoint: its signed manifest and restore record.
Result<std::pair<store::Manifest, job::RestoreRecord>> load_part(const store::JobDir& dir, const std::string& id,
                                                                 uint32_t index) {
  auto m = store::load_signed_manifest(dir, id);
  if (!m) return m.error();
  auto record = job::restore_record(*m);
  if (!record) return record.error();
  if (record->serve_pipe.empty())
    return make_error(ErrorKind::corrupt, "checkpoint " + id + " of part " + std::to_string(index) +
                                              " has no command pipe: it is not a part's checkpoint");
  return std::pair{std::move(*m), std::move(*record)};
}

}  // namespace

std::vector<job::Check> PartRuntime::check_restore(const RestorePart& r) const {
  auto loaded = load_part(dir_, r.checkpoint(), part_.index());
  if (!loaded) {
    const Error& e = loaded.error();
    return {{"key", job::Verdict::fail, e.message, e.hint, kind_of(e)}};
  }
  std::vector<job::Check> checks{{"key", job::Verdict::pass, "checkpoint " + r.checkpoint() + " is signed with this node's key",
                                  "", ErrorKind::corrupt}};
  // What a single-node restore checks first, and the parts' network.
  job::Node here = job::this_node();
  here.criu = criu::probe(criu_path_);
  for (auto& c : job::check_restore(loaded->first, loaded->second, here)) checks.push_back(std::move(c));
  checks.push_back(job::network_check(part_.bridge(), part_.address(), here));
  return checks;
}

Status PartRuntime::restore(const RestorePart& r) {
  std::string id = r.checkpoint();
  CRYO_TRY(job::first_failure(check_restore(r)));
  auto loaded = load_part(dir_, id, part_.index());
  if (!loaded) return loaded.error();
  const store::Manifest* m = &loaded->first;
  const job::RestoreRecord* record = &loaded->second;
  // Open MPI restores on one host take turns (shared/docs/platform.md):
  // parts of one job on one host too.
  CRYO_TRY(sys::mkdir_p("/run/cryo", 0755));
  auto turn = sys::lock_file("/run/cryo/mpi-restore.lock", true, true);
  if (!turn) return turn.error();
  if (!record->mounts) CRYO_TRY(sys::mkdir_p(legacy_shm_dir(), 0700));
  CRYO_TRY(net_.create());
  // Locked before anything of the part is back: the networks unlock only
  // once every part is.
  CRYO_TRY(net_.lock());
  // Its outputs and command pipe, new for this run of the part.
  auto outputs = job::restored_outputs(dir_, id, record->outputs, true, part_.tee());
  if (!outputs) return outputs.error();
  int serve[2];
  if (::pipe2(serve, O_CLOEXEC) < 0) return sys_error("cannot create the part's command pipe");
  UniqueFd serve_r(serve[0]), serve_w(serve[1]);
  criu::RestoreRequest req;
  req.tcp_established = record->tcp_established;
  req.inherit = outputs->inherit;
  req.inherit.emplace_back(record->serve_pipe, serve_r.get());
  // The part's network namespace, dumped as external: CRIU takes it back
  // by its key, as an inherited fd.
  auto netns = sys::open(net_.path(), O_RDONLY);
  if (!netns) return netns.error();
  req.inherit.emplace_back("part-net", netns->get());
  job::add_host_mounts(*record, req);
  const auto& saved = record->files;
  // As a single-node restore: every byte checked before the part runs, a
  // fast copy's page images while CRIU reads them.
  Result<pid_t> pid = make_error("the part was not restored");
  Status st = job::with_checkpoint_files(
      dir_, tier_, id, *m, true, saved.empty(), {},
      [&](store::Materialized& files, bool* pages_damaged) -> Status {
        CRYO_TRY(job::put_back_files(saved, files.dir));
        if (auto init = job::job_init(dir_); !init) return init.error();  // CRIU reopens it
        fault_point("agent.restore");
        pid = job::criu_restore(criu_path_, id, req, files, dir_.file(store::JobFile::criu_logs), config_.owner(), [&] { return outputs->cut_logs(); },
                                pages_damaged);
        return pid ? Status{} : Status{pid.error()};
      },
      &restore_warning_);
  if (!st) return st;
  outputs_ = std::move(outputs->outputs);
  pid_ = *pid;
  serve_ = std::move(serve_w);
  last_checkpoint_.clear();
  CRYO_LOG("coord", info) << "part " << part_.index() << " restored from its checkpoint " << id;
  return {};
}

}  // namespace cryo::coord
