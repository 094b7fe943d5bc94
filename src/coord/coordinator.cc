#include "coord/coordinator.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "base/fault.h"
#include "base/sys.h"
#include "coord/wire.h"
#include "job/mpi.h"
#include "job/record.h"
#include "store/flush.h"
#include "store/signing.h"

namespace cryo::coord {

Result<std::string> part_address(const std::string& net, uint32_t k) {
  auto slash = net.find('/');
  in_addr a{};
  if (slash == std::string::npos || ::inet_pton(AF_INET, net.substr(0, slash).c_str(), &a) != 1)
    return make_error("'" + net + "' is not an IPv4 network such as 192.0.2.0/24");
  int prefix = std::atoi(net.c_str() + slash + 1);
  uint32_t host = ntohl(a.s_addr) + 10 + k;
  if (prefix < 8 || prefix > 28 || ((host ^ ntohl(a.s_addr)) >> (32 - prefix)) != 0)
    return make_error(fmt::format("the network {} has no room for part {}", net, k));
  a.s_addr = htonl(host);
  char ip[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, ip, sizeof ip);
  return std::string(ip) + net.substr(slash);
}

std::vector<std::string> mpi_environment(const job::JobConfig& c, const std::string& hostfile) {
  std::string cryo = sys::self_dir() + "/cryo";
  return {
      // Daemons in the other parts start through cryo, not ssh.
      "OMPI_MCA_plm=rsh", "OMPI_MCA_plm_rsh_agent=" + cryo + " rsh", "OMPI_MCA_orte_default_hostfile=" + hostfile,
      // Open MPI must not take the nodes from a Slurm allocation: the parts are the nodes.
      "OMPI_MCA_ras=^slurm",
      // Between parts only TCP, on the parts' network.
      "OMPI_MCA_btl=self,vader,tcp", "OMPI_MCA_btl_tcp_if_include=" + c.part_net,
      "OMPI_MCA_oob_tcp_if_include=" + c.part_net, "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
      // Its shared memory in each part's own /dev/shm (job/mounts.h), which
      // CRIU dumps with the part: two parts on one host share no files.
      "OMPI_MCA_btl_vader_backing_directory=/dev/shm", "OMPI_MCA_shmem_mmap_backing_file_base_dir=/dev/shm"};
}


Part Coordinator::part(uint32_t k) const {
  Part p;
  p.set_job(config_.name);
  p.set_index(k);
  p.set_store(dir_.path().substr(0, dir_.path().rfind('/')));
  p.set_address(part_address(config_.part_net, k).value());
  p.set_bridge(config_.bridge);
  return p;
}

Status Coordinator::connect(const std::vector<std::string>& agents) {
  agents_.clear();
  // The agents run what they are asked as root: each connection proves
  // that both ends hold the site's key.
  auto key = store::SigningKey::load(store::key_path(), true);
  if (!key) return key.error();
  for (const auto& address : agents) {
    auto c = connect_tcp(address, 30);
    if (!c) return c.error().with_hint("start 'cryo agent --listen " + address + "' on that node");
    auto channel = handshake(std::move(*c), *key, true, "", "the agent at " + address, 10);
    if (!channel) return channel.error();
    std::string node = channel->peer().node();
    agents_.push_back({address, node, std::move(*channel), {}});
  }
  return {};
}

Result<Reply> Coordinator::wait_reply(Agent& a, uint64_t seq, double limit) {
  for (;;) {
    Envelope e;
    if (auto st = a.conn.recv(e, limit); !st) {
      Error err = st.error().context(fmt::format("the agent on {} ({})", a.node, a.address));
      if (st.error().code == ECONNRESET) err.message = fmt::format("the agent on {} ({}) went away", a.node, a.address);
      a.conn.reset();
      return err;
    }
    if (e.has_event()) {
      a.queued.push_back(e);
      continue;
    }
    if (e.has_reply() && e.reply().seq() == seq) return e.reply();
  }
}

Status Coordinator::all(const std::string& what, std::vector<Request> requests, std::vector<Reply>* replies,
                        double limit, const std::vector<size_t>& which) {
  std::vector<size_t> targets = which;
  if (targets.empty())
    for (size_t i = 0; i < agents_.size(); i++) targets.push_back(i);
  std::vector<uint64_t> seqs(agents_.size(), 0);
  Status first;
  // Every agent gets its request first, so that the nodes work at once.
  for (size_t i : targets) {
    Agent& a = agents_[i];
    if (!a.conn.valid()) {
      if (first) first = make_error(fmt::format("the agent on {} ({}) is gone", a.node, a.address));
      continue;
    }
    Request r = requests.size() == 1 ? requests[0] : requests[i];
    r.set_seq(++seq_);
    seqs[i] = seq_;
    Envelope e;
    *e.mutable_request() = r;
    if (auto st = a.conn.send(e); !st && first) first = st.error().context("the agent on " + a.node);
  }
  if (replies) replies->assign(agents_.size(), Reply());
  for (size_t i : targets) {
    Agent& a = agents_[i];
    if (!a.conn.valid() || seqs[i] == 0) continue;
    auto r = wait_reply(a, seqs[i], limit);
    if (!r) {
      if (first) first = r.error();
      continue;
    }
    if (!r->ok() && first)
      first = Error{fmt::format("{} failed on {} ({}): {}", what, a.node, a.address, r->error()), 0, r->hint()};
    if (replies) (*replies)[i] = *r;
  }
  return first;
}

Status Coordinator::start() {
  std::string hostfile = dir_.file(store::JobFile::hostfile);
  std::string lines;
  unsigned slots = std::max(1u, std::thread::hardware_concurrency());
  for (uint32_t k = 0; k < agents_.size(); k++) {
    std::string a = part(k).address();
    lines += fmt::format("{} slots={}\n", a.substr(0, a.find('/')), slots);
  }
  CRYO_TRY(sys::write_file_atomic(hostfile, lines, 0644));
  std::vector<Request> reqs(agents_.size());
  for (uint32_t k = 0; k < agents_.size(); k++) {
    auto* s = reqs[k].mutable_start();
    *s->mutable_part() = part(k);
    if (k == 0)
      for (const auto& a : config_.command) s->add_command(a);
    for (const auto& e : mpi_environment(config_, hostfile)) s->add_env(e);
    // Each part its own Open MPI session directory.
    s->add_env("OMPI_MCA_orte_tmpdir_base=" + dir_.part(k).file(store::JobFile::mpi));
    s->add_env("CRYO_STORE=" + part(k).store());
    s->set_cwd(config_.cwd);
    CRYO_TRY(sys::mkdir_p(dir_.part(k).file(store::JobFile::mpi), 0700));
  }
  Status st = all("starting the job", reqs, nullptr, 60);
  if (!st) stop_all();
  return st;
}

Status Coordinator::spawn(const std::string& host, const std::vector<std::string>& argv) {
  std::string addr = host.substr(0, host.find('/'));
  for (uint32_t k = 0; k < agents_.size(); k++) {
    std::string a = part(k).address();
    if (a.substr(0, a.find('/')) != addr) continue;
    std::string line;
    for (const auto& w : argv) line += (line.empty() ? "" : " ") + w;
    Request r;
    auto* s = r.mutable_spawn();
    s->set_part(k);
    for (const char* w : {"/bin/sh", "-c"}) s->add_argv(w);
    s->add_argv(line);
    return all("starting a command", {r}, nullptr, 30, {k});
  }
  return make_error("no part of job '" + config_.name + "' has the address " + host);
}

Result<std::string> Coordinator::checkpoint(bool stop, Timings* t) {
  auto id = dir_.next_id();
  if (!id) return id.error();
  Timings local;
  Timings& tm = t ? *t : local;
  double t0 = sys::now();
  auto phase = [&](const std::string& name) {
    Request r;
    r.mutable_phase()->set_name(name);
    r.mutable_phase()->set_checkpoint(*id);
    r.mutable_phase()->set_tcp_established(true);
    return r;
  };
  auto abort = [&](const Error& e) -> Error {
    (void)all("aborting the checkpoint", {phase("abort")}, nullptr, 60);
    return e;
  };
  // 1. Every part's network locked: from here nothing moves between nodes.
  if (auto st = all("prepare", {phase("prepare")}, nullptr, 60); !st) return abort(st.error());
  tm.prepare = sys::now() - t0;
  // 2. Every part dumped, with its TCP state, and flushed into the store.
  std::vector<Reply> dumped;
  if (auto st = all("dump", {phase("dump")}, &dumped, timeout_); !st) return abort(st.error());
  tm.dump = sys::now() - t0 - tm.prepare;
  // 3. Every part's checkpoint verified; then the job's, naming them all.
  if (auto st = all("commit", {phase("commit")}, nullptr, timeout_); !st) return abort(st.error());
  store::Manifest m = store::new_manifest(config_.name, *id, t0);
  m.command = config_.command;
  m.cwd = config_.cwd;
  m.dumped_to = "parts";
  job::RestoreRecord record;
  record.coordinated = true;
  record.tcp_established = true;
  for (uint32_t k = 0; k < agents_.size(); k++) {
    record.parts.push_back({k, dumped[k].checkpoint(), agents_[k].node, agents_[k].address, part(k).address(),
                            dumped[k].bytes()});
    m.total_bytes += dumped[k].bytes();
    m.stored_bytes += dumped[k].stored_bytes();
    m.frozen_seconds = std::max(m.frozen_seconds, dumped[k].frozen_seconds());
  }
  record.prepare_seconds = tm.prepare;
  record.dump_seconds = tm.dump;
  m.job_state = job::to_json(record);
  m.dump_seconds = tm.prepare + tm.dump;
  if (auto st = dir_.commit(m, [](const std::string&) -> Status {
        fault_point("coord.before_commit");
        return {};
      });
      !st)
    return abort(st.error());
  tm.commit = sys::now() - t0 - tm.prepare - tm.dump;
  // 4. The job goes on, or ends here.
  if (auto st = all(stop ? "stop" : "resume", {phase(stop ? "stop" : "resume")}, nullptr, 60); !st)
    return st.error().context("checkpoint " + *id + " is committed, but");
  tm.total = sys::now() - t0;
  tm.frozen = m.frozen_seconds;
  tm.bytes = m.total_bytes;
  return *id;
}

Result<std::vector<std::string>> retain_parts(const store::JobDir& dir, int keep) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  {
    auto lock = sys::lock_file(dir.file(store::JobFile::flush_lock), true, false);
    if (!lock) return removed;  // a restore holds them
    auto r = dir.apply_retention(keep);
    if (!r) return r.error();
    removed = *r;
  }
  // Part by part, the checkpoints the job's remaining ones name.
  std::map<uint32_t, std::set<std::string>> named;
  auto ids = dir.checkpoint_ids();
  if (!ids) return ids.error();
  for (const auto& id : *ids) {
    auto m = dir.load_manifest(id);
    auto record = m ? job::restore_record(*m) : Result<job::RestoreRecord>(m.error());
    if (!record) return removed;  // cannot tell what it names: every part checkpoint stays
    for (const auto& p : record->parts) named[p.index].insert(p.checkpoint);
  }
  for (const auto& [k, keep_ids] : named) {
    store::JobDir part = dir.part(k);
    auto lock = sys::lock_file(part.file(store::JobFile::flush_lock), true, false);
    if (!lock) continue;
    auto part_ids = part.checkpoint_ids();
    if (!part_ids) return part_ids.error();
    bool any = false;
    for (const auto& id : *part_ids)
      if (!keep_ids.count(id) && id < *keep_ids.rbegin()) {
        CRYO_TRY(part.remove_checkpoint(id));
        any = true;
      }
    auto r = store::retain(part, 0, any);  // the chunks no checkpoint of the part names
    if (!r) return r.error();
  }
  return removed;
}

Result<std::vector<Request>> Coordinator::restore_requests(const std::string& id, bool dry_run) {
  auto m = store::load_signed_manifest(dir_, id);
  if (!m) return m.error();
  auto record = job::restore_record(*m);
  if (!record) return record.error();
  const auto& parts = record->parts;
  if (parts.size() != agents_.size())
    return make_error(fmt::format("checkpoint {} of job '{}' has {} parts; {} agents were given", id, config_.name,
                                  parts.size(), agents_.size()))
        .with_hint("give one agent per part with --agents");
  std::vector<Request> reqs(agents_.size());
  for (uint32_t k = 0; k < agents_.size(); k++) {
    auto* r = reqs[k].mutable_restore();
    *r->mutable_part() = part(k);
    r->set_checkpoint(parts[k].checkpoint);
    if (dry_run) r->set_dry_run(true);
  }
  return reqs;
}

Result<std::vector<std::vector<job::Check>>> Coordinator::check_restore(const std::string& id) {
  auto reqs = restore_requests(id, true);
  if (!reqs) return reqs.error();
  std::vector<Reply> replies;
  CRYO_TRY(all("checking", *reqs, &replies, timeout_));
  std::vector<std::vector<job::Check>> out;
  for (const auto& reply : replies) {
    out.emplace_back();
    for (const auto& text : reply.checks()) {
      auto j = nlohmann::json::parse(text, nullptr, false);
      if (!j.is_object()) continue;
      job::Check c{j.value("check", ""), job::Verdict::pass, j.value("detail", ""), j.value("fix", ""), ErrorKind::unfit};
      std::string verdict = j.value("result", "");
      c.verdict = verdict == "fail" ? job::Verdict::fail : verdict == "warn" ? job::Verdict::warn : job::Verdict::pass;
      out.back().push_back(std::move(c));
    }
  }
  return out;
}

Status Coordinator::restore(const std::string& id, std::vector<std::string>* warnings) {
  auto reqs_or = restore_requests(id, false);
  if (!reqs_or) return reqs_or.error();
  std::vector<Request> reqs = std::move(*reqs_or);
  std::vector<Reply> replies;
  if (auto st = all("restoring", reqs, &replies, timeout_); !st) {
    stop_all();
    return st;
  }
  for (uint32_t k = 0; k < replies.size(); k++)
    if (!replies[k].warning().empty())
      warnings->push_back(fmt::format("the fast copy of part {} ({}) was not used: {}; restored from the store", k,
                                      agents_[k].node, replies[k].warning()));
  // Every part is back: now, and only now, the networks open.
  Request unlock;
  unlock.mutable_phase()->set_name("unlock");
  return all("unlocking the networks", {unlock}, nullptr, 60);
}

void Coordinator::stop_all() {
  Request r;
  r.mutable_phase()->set_name("stop");
  (void)all("stopping", {r}, nullptr, 60);
}

std::vector<int> Coordinator::fds() const {
  std::vector<int> out;
  for (const auto& a : agents_)
    if (a.conn.valid()) out.push_back(a.conn.fd());
  return out;
}

Result<int> Coordinator::event(int fd) {
  for (auto& a : agents_) {
    if (a.conn.fd() != fd && !(fd < 0 && !a.queued.empty())) continue;
    Envelope e;
    if (!a.queued.empty()) {
      e = a.queued.front();
      a.queued.erase(a.queued.begin());
    } else if (auto st = a.conn.recv(e, 10); !st) {
      a.conn.reset();
      return make_error(fmt::format("the agent on {} ({}) went away", a.node, a.address));
    }
    if (e.has_event() && e.event().part() == 0 && !part0_ended_) {
      part0_ended_ = true;
      return e.event().wait_status();
    }
    return -1;
  }
  return -1;
}

}  // namespace cryo::coord
