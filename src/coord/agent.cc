#include "coord/agent.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/sys.h"
#include "coord/part.h"
#include "coord/wire.h"
#include "store/signing.h"

namespace cryo::coord {

namespace {

void say(const AgentOptions& o, const std::string& line) {
  std::fprintf(stderr, "cryo agent %s: %s\n", o.node.c_str(), line.c_str());
}

class Session {
 public:
  Session(const AgentOptions& o, Channel conn) : o_(o), conn_(std::move(conn)) {}
  void run(int sigfd);

 private:
  Reply handle(const Request& r);
  PartRuntime* part(uint32_t index);
  void reap();

  const AgentOptions& o_;
  Channel conn_;
  std::map<uint32_t, std::unique_ptr<PartRuntime>> parts_;
};

PartRuntime* Session::part(uint32_t index) {
  auto it = parts_.find(index);
  return it == parts_.end() ? nullptr : it->second.get();
}

Reply Session::handle(const Request& r) {
  Reply reply;
  reply.set_seq(r.seq());
  reply.set_ok(true);
  auto failed = [&](const Error& e) {
    reply.set_ok(false);
    reply.set_error(e.message);
    if (!e.hint.empty()) reply.set_hint(e.hint);
    return reply;
  };
  double t0 = sys::now();
  if (r.has_start()) {
    const auto& p = r.start().part();
    auto rt = std::make_unique<PartRuntime>(p, o_.tier, o_.criu_path);
    if (auto st = rt->start(r.start()); !st) return failed(st.error());
    say(o_, fmt::format("part {} of job '{}' started at {}", p.index(), p.job(), p.address()));
    parts_[p.index()] = std::move(rt);
  } else if (r.has_spawn()) {
    auto* p = part(r.spawn().part());
    if (!p) return failed(make_error(fmt::format("no part {} here", r.spawn().part())));
    std::vector<std::string> argv(r.spawn().argv().begin(), r.spawn().argv().end());
    if (auto st = p->spawn(argv); !st) return failed(st.error());
  } else if (r.has_restore() && r.restore().dry_run()) {
    PartRuntime rt(r.restore().part(), o_.tier, o_.criu_path);
    for (const auto& c : rt.check_restore(r.restore())) reply.add_checks(job::to_json(c).dump());
  } else if (r.has_restore()) {
    const auto& p = r.restore().part();
    auto rt = std::make_unique<PartRuntime>(p, o_.tier, o_.criu_path);
    if (auto st = rt->restore(r.restore()); !st) return failed(st.error());
    if (!rt->restore_warning().empty()) {
      reply.set_warning(rt->restore_warning());
      say(o_, fmt::format("part {} of job '{}': its fast copy was not used: {}; restored from the store", p.index(),
                          p.job(), rt->restore_warning()));
    }
    say(o_, fmt::format("part {} of job '{}' restored at {} (locked until every part is back)", p.index(), p.job(),
                        p.address()));
    parts_[p.index()] = std::move(rt);
  } else if (r.has_phase()) {
    const std::string& name = r.phase().name();
    for (auto& [index, p] : parts_) {
      if (r.phase().has_part() && r.phase().part() != index) continue;
      if (name == "prepare") {
        if (auto st = p->prepare(); !st) return failed(st.error());
      } else if (name == "dump") {
        auto d = p->dump(r.phase().tcp_established());
        if (!d) return failed(d.error());
        reply.set_checkpoint(d->checkpoint);
        reply.set_bytes(reply.bytes() + d->bytes);
        reply.set_stored_bytes(reply.stored_bytes() + d->stored_bytes);
        reply.set_frozen_seconds(std::max(reply.frozen_seconds(), d->frozen_seconds));
      } else if (name == "commit") {
        if (auto st = p->verify(); !st) return failed(st.error());
      } else if (name == "resume" || name == "unlock") {
        p->resume();
      } else if (name == "abort") {
        p->abort();
      } else if (name == "stop") {
        p->stop();
      } else {
        return failed(make_error("unknown phase '" + name + "'"));
      }
    }
    // The tests kill the agent here, each phase done but not answered.
    fault_point(("agent." + name).c_str());
    if (name == "stop") {
      if (r.phase().has_part())
        parts_.erase(r.phase().part());
      else
        parts_.clear();
    }
  }
  reply.set_seconds(sys::now() - t0);
  return reply;
}

// A part's init ended: tell the coordinator.
void Session::reap() {
  int status;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0)
    for (auto& [index, p] : parts_)
      if (p->pid() == pid) {
        p->drain();
        p->ended();
        Envelope e;
        e.mutable_event()->set_part(index);
        e.mutable_event()->set_wait_status(status);
        (void)conn_.send(e);
      }
}

void Session::run(int sigfd) {
  for (;;) {
    std::vector<pollfd> fds{{conn_.fd(), POLLIN, 0}, {sigfd, POLLIN, 0}};
    for (auto& [i, p] : parts_)
      for (int fd : p->output_fds()) fds.push_back({fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) return;
    if (fds[1].revents) {
      signalfd_siginfo si;
      while (::read(sigfd, &si, sizeof si) == sizeof si) {
      }
      reap();
    }
    for (auto& [i, p] : parts_) p->drain();
    if (fds[0].revents) {
      Envelope in;
      if (auto st = conn_.recv(in, 30); !st) {
        if (st.error().code == EBADMSG)
          say(o_, "refused a coordinator: " + st.error().message + "; ending its parts");
        else
          say(o_, "the coordinator went away: " + st.error().message + "; ending its parts");
        return;  // the parts end with the session
      }
      if (!in.has_request()) continue;
      Envelope out;
      *out.mutable_reply() = handle(in.request());
      if (auto st = conn_.send(out); !st) return;
    }
  }
}

// The first IPv4 address of this host's name, as the other nodes reach it.
std::string host_ip() {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  std::string ip = "127.0.0.1";
  if (::getaddrinfo(sys::hostname().c_str(), nullptr, &hints, &res) == 0 && res) {
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
    ip = buf;
    ::freeaddrinfo(res);
  }
  return ip;
}

}  // namespace

Result<SlurmAgents> start_slurm_agents(const std::string& cryo, const std::vector<std::string>& cryo_args,
                                       const std::string& dir, int nodes, double timeout) {
  CRYO_TRY(sys::remove_tree(dir));
  CRYO_TRY(sys::mkdir_p(dir, 0755));
  std::vector<std::string> argv{"srun", "--overlap", "--ntasks-per-node=1", "--nodes=" + std::to_string(nodes),
                                "--kill-on-bad-exit=0", "--output=" + dir + "/agents.log", cryo};
  argv.insert(argv.end(), cryo_args.begin(), cryo_args.end());
  argv.insert(argv.end(), {"agent", "--listen", "0.0.0.0:0", "--announce-dir", dir});
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("cannot start the agents");
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::setpgid(0, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp("srun", args.data());
    ::_exit(127);
  }
  SlurmAgents out;
  out.srun = pid;
  double deadline = sys::now() + timeout;
  for (;;) {
    auto names = sys::list_dir(dir);
    std::vector<std::string> found;
    if (names)
      for (const auto& n : *names)
        if (n != "agents.log")
          if (auto t = sys::read_file(dir + "/" + n); t && t->find(' ') != std::string::npos)
            found.push_back(t->substr(t->find(' ') + 1, t->find('\n') - t->find(' ') - 1));
    if (static_cast<int>(found.size()) >= nodes) {
      out.addresses = found;  // list_dir is sorted: by node name
      return out;
    }
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid || sys::now() > deadline) {
      stop_slurm_agents(pid);
      std::string log;
      if (auto l = sys::read_file(dir + "/agents.log")) log = *l;
      return make_error(fmt::format("the agents did not start on all {} nodes ({} did){}", nodes, found.size(),
                                    log.empty() ? "" : ": " + log.substr(0, 400)));
    }
    ::usleep(100000);
  }
}

void stop_slurm_agents(pid_t srun) {
  if (srun <= 0) return;
  ::kill(srun, SIGTERM);  // srun passes it on to every agent
  for (int i = 0; i < 100; i++) {
    if (::waitpid(srun, nullptr, WNOHANG) == srun) return;
    ::usleep(50000);
  }
  ::kill(-srun, SIGKILL);
  ::waitpid(srun, nullptr, 0);
}

int run_agent(const AgentOptions& o) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  ::signal(SIGPIPE, SIG_IGN);

  auto fail = [](const Error& e) {
    std::fprintf(stderr, "cryo: error: %s\n", e.message.c_str());
    if (!e.hint.empty()) std::fprintf(stderr, "cryo: hint: %s\n", e.hint.c_str());
    return 1;
  };
  auto key = store::SigningKey::load(store::key_path(), true);
  if (!key) return fail(key.error());
  auto l = listen_tcp(o.listen);
  if (!l) return fail(l.error());
  std::string address = local_address(l->get());
  if (address.rfind("0.0.0.0:", 0) == 0) address = (o.advertise.empty() ? host_ip() : o.advertise) + address.substr(7);
  say(o, "listening on " + address);
  std::string announce = o.announce.empty() && !o.announce_dir.empty() ? o.announce_dir + "/" + o.node : o.announce;
  if (!announce.empty())
    if (auto st = sys::write_file_atomic(announce, o.node + " " + address + "\n", 0644); !st)
      say(o, "warning: " + st.error().message + ", ignoring");
  for (;;) {
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    UniqueFd c(::accept4(l->get(), reinterpret_cast<sockaddr*>(&from), &from_len, SOCK_CLOEXEC));
    if (!c.valid()) continue;
    char ip[INET_ADDRSTRLEN] = "?";
    ::inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    // Only a holder of the site's key is served (coord/wire.h): anyone
    // else who reaches the port is refused before any request is read.
    auto channel = handshake(std::move(c), *key, false, o.node, fmt::format("a coordinator from {}", ip), 10);
    if (!channel) {
      say(o, "refused: " + channel.error().message.substr(0, 300));
      continue;
    }
    say(o, "a coordinator connected");
    Session(o, std::move(*channel)).run(sigfd.get());
    if (o.once) return 0;
  }
}

}  // namespace cryo::coord
