#include "container/engine.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/sys.h"

namespace cryo::container {

namespace {

// containerd unpacks the images of a container restored from a checkpoint
// into a temporary /tmp/ctrd-checkpoint* directory and leaves it there,
// the job's whole memory each time (containerd issue #10166).
constexpr const char* kContainerdTmp = "/tmp";

std::vector<std::string> containerd_leftovers() {
  std::vector<std::string> out;
  if (auto names = sys::list_dir(kContainerdTmp))
    for (const auto& n : *names)
      if (n.rfind("ctrd-checkpoint", 0) == 0) out.push_back(std::string(kContainerdTmp) + "/" + n);
  return out;
}

// Removes the directories containerd left since `before` that hold these
// very images (the same process tree and descriptors): never another
// restore's.
void remove_containerd_leftovers(const std::vector<std::string>& before, const std::string& images) {
  for (const auto& d : containerd_leftovers()) {
    if (std::find(before.begin(), before.end(), d) != before.end()) continue;
    bool ours = true;
    for (const char* f : {"pstree.img", "descriptors.json", "inventory.img"}) {
      auto a = sys::read_file(d + "/" + f), b = sys::read_file(images + "/" + f);
      ours = ours && a && b && *a == *b;
    }
    if (ours) (void)sys::remove_tree(d);
  }
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The run options cryo always gives: runc (Debian's crun cannot checkpoint),
// and the limits this node allows (it lacks CAP_SYS_RESOURCE).
std::vector<std::string> base_options(Kind k) {
  std::vector<std::string> o = {"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"};
  if (k == Kind::podman) o.insert(o.begin(), {"--runtime", "runc"});
  return o;
}

}  // namespace

const char* kind_name(Kind k) { return k == Kind::podman ? "podman" : "docker"; }

Result<Kind> parse_kind(const std::string& name) {
  if (name == "podman") return Kind::podman;
  if (name == "docker") return Kind::docker;
  return make_error("unknown container engine '" + name + "'").with_hint("use podman or docker");
}

Result<std::string> Engine::call(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{client()};
  argv.insert(argv.end(), args.begin(), args.end());
  return sys::run_command(argv);
}

Result<std::string> Engine::version() const {
  if (sys::find_in_path(client()).empty())
    return make_error(std::string(client()) + " is not installed")
        .with_hint(kind_ == Kind::podman ? "install Debian's podman and runc packages"
                                         : "install Debian's docker.io package and start dockerd with --experimental");
  auto v = call({"version", "--format", kind_ == Kind::podman ? "{{.Client.Version}}" : "{{.Server.Version}}"});
  if (!v)
    return v.error().with_hint(kind_ == Kind::podman ? "check that 'podman info' works"
                                                     : "start dockerd (with --experimental), or point DOCKER_HOST at it");
  if (kind_ == Kind::docker) {
    auto exp = call({"version", "--format", "{{.Server.Experimental}}"});
    if (exp && trim(*exp) != "true")
      return make_error("the Docker daemon runs without experimental features, which 'docker checkpoint' needs")
          .with_hint("start dockerd with --experimental (or \"experimental\": true in daemon.json)");
  }
  return trim(*v);
}

Status Engine::check_image(const std::string& image) const {
  auto r = call({"image", "inspect", "--format", "{{.Id}}", image});
  if (!r)
    return make_error("the image '" + image + "' is not on this node")
        .with_hint(fmt::format("load it first ('{} load' or '{} import'); a restore needs the same image", client(), client()));
  return {};
}

Status Engine::run(const RunSpec& spec) const {
  std::vector<std::string> args{"run", "-d", "--name", spec.name};
  auto base = base_options(kind_);
  args.insert(args.end(), base.begin(), base.end());
  if (!spec.criu_config.empty()) args.insert(args.end(), {"--annotation", "org.criu.config=" + spec.criu_config});
  for (const auto& e : spec.env) args.insert(args.end(), {"--env", e});
  args.insert(args.end(), spec.options.begin(), spec.options.end());
  args.push_back(spec.image);
  args.insert(args.end(), spec.command.begin(), spec.command.end());
  auto r = call(args);
  if (!r) return r.error().context("cannot start the container");
  return {};
}

Result<Info> Engine::inspect(const std::string& name) const {
  auto r = call({"inspect", "--type", "container", name});
  if (!r) return r.error();
  auto j = nlohmann::json::parse(*r, nullptr, false);
  if (!j.is_array() || j.empty()) return make_error(std::string(client()) + " inspect " + name + " said nothing");
  const nlohmann::json& c = j[0];
  auto at = [](const nlohmann::json& o, const char* key) -> const nlohmann::json* {
    return o.is_object() && o.contains(key) ? &o[key] : nullptr;
  };
  Info i;
  i.id = c.value("Id", "");
  if (auto st = at(c, "State")) {
    i.pid = st->value("Pid", 0);
    i.running = st->value("Running", false);
    i.paused = st->value("Paused", false);
  }
  if (kind_ == Kind::docker) {
    i.log_path = c.value("LogPath", "");
  } else if (auto hc = at(c, "HostConfig")) {
    if (auto lc = at(*hc, "LogConfig")) i.log_path = lc->value("Path", "");
  }
  if (auto net = at(c, "NetworkSettings")) {
    i.ip = net->value("IPAddress", "");
    if (auto nets = at(*net, "Networks"); nets && i.ip.empty() && nets->is_object())
      for (auto it = nets->begin(); it != nets->end(); ++it)
        if (it->is_object() && !it->value("IPAddress", "").empty()) i.ip = it->value("IPAddress", "");
  }
  return i;
}

Result<int> Engine::wait(const std::string& name) const {
  auto r = call({"wait", name});
  if (!r) return r.error();
  return std::atoi(trim(*r).c_str());
}

Status Engine::kill(const std::string& name, int sig) const {
  auto r = call({"kill", "--signal", std::to_string(sig), name});
  if (!r) return r.error();
  return {};
}

Status Engine::pause(const std::string& name) const {
  auto r = call({"pause", name});
  if (!r) return r.error();
  return {};
}

Status Engine::unpause(const std::string& name) const {
  auto r = call({"unpause", name});
  if (!r) return r.error();
  return {};
}

Status Engine::remove(const std::string& name) const {
  if (!call({"inspect", "--type", "container", "--format", "{{.Id}}", name})) return {};
  auto r = call({"rm", "-f", name});
  if (!r) return r.error();
  return {};
}

Status Engine::checkpoint(const std::string& name, const std::string& dir, bool tcp) const {
  if (kind_ == Kind::podman) {
    std::string tar = dir + "/.export.tar";
    std::vector<std::string> args{"container", "checkpoint", "--leave-running", "--file-locks",
                                  "--export",  tar,          "--compress",      "none"};
    if (tcp) args.push_back("--tcp-established");
    args.push_back(name);
    auto r = call(args);
    if (!r) return r.error().context("podman could not checkpoint the container");
    CRYO_TRY(sys::mkdir_p(dir + "/container", 0700));
    auto x = sys::run_command({"tar", "-xf", tar, "-C", dir + "/container"});
    ::unlink(tar.c_str());
    if (!x) return x.error();
    return {};
  }
  // Docker keeps checkpoints under its data root, in the container's directory.
  auto info = inspect(name);
  if (!info) return info.error();
  auto root = call({"info", "--format", "{{.DockerRootDir}}"});
  if (!root) return root.error();
  std::string cp = "cryo";
  (void)call({"checkpoint", "rm", name, cp});
  std::vector<std::string> args{"checkpoint", "create", "--leave-running"};
  (void)tcp;  // Docker's checkpoint has no option for it: CRIU's defaults apply
  args.insert(args.end(), {name, cp});
  auto r = call(args);
  if (!r) return r.error().context("docker could not checkpoint the container");
  std::string from = trim(*root) + "/containers/" + info->id + "/checkpoints/" + cp;
  CRYO_TRY(sys::mkdir_p(dir + "/container", 0700));
  auto c = sys::run_command({"cp", "-a", from, dir + "/container/checkpoint"});
  (void)call({"checkpoint", "rm", name, cp});
  if (!c) return c.error();
  return {};
}

Status Engine::restore(const RunSpec& spec, const std::string& dir, bool tcp, uint64_t log_cut) const {
  CRYO_TRY(remove(spec.name));
  if (kind_ == Kind::podman) {
    // The checkpoint's files are read-only here (they may be a verified
    // fast copy): the tar gets a cut copy of the log instead.
    char tmpl[] = "/tmp/cryo-import-XXXXXX";
    if (!::mkdtemp(tmpl)) return sys_error("cannot create a temporary directory");
    std::string tmp = tmpl;
    struct Cleanup {
      std::string dir;
      ~Cleanup() { (void)sys::remove_tree(dir); }
    } cleanup{tmp};
    std::string tar = tmp + "/checkpoint.tar";
    auto t = sys::run_command({"tar", "-cf", tar, "-C", dir + "/container", "--exclude", "./ctr.log", "."});
    if (!t) return t.error();
    if (sys::exists(dir + "/container/ctr.log")) {
      auto log = sys::read_file(dir + "/container/ctr.log");
      if (!log) return log.error();
      if (log->size() < log_cut) return make_error("the checkpoint's container log is shorter than its cut");
      CRYO_TRY(sys::write_file_atomic(tmp + "/ctr.log", std::string_view(*log).substr(0, log_cut), 0600, false));
      auto a = sys::run_command({"tar", "-rf", tar, "-C", tmp, "./ctr.log"});
      if (!a) return a.error();
    }
    std::vector<std::string> args{"container", "restore", "--file-locks", "--import", tar};
    if (tcp) args.push_back("--tcp-established");
    auto r = call(args);
    if (!r) return r.error().context("podman could not restore the container");
    return {};
  }
  // Docker: the same container again, started from the images; its log
  // starts empty.
  (void)log_cut;
  std::vector<std::string> args{"create", "--name", spec.name};
  auto base = base_options(kind_);
  args.insert(args.end(), base.begin(), base.end());
  for (const auto& e : spec.env) args.insert(args.end(), {"--env", e});
  args.insert(args.end(), spec.options.begin(), spec.options.end());
  args.push_back(spec.image);
  args.insert(args.end(), spec.command.begin(), spec.command.end());
  auto c = call(args);
  if (!c) return c.error().context("cannot create the container to restore into");
  std::string id = trim(*c);
  auto root = call({"info", "--format", "{{.DockerRootDir}}"});
  if (!root) return root.error();
  std::string to = trim(*root) + "/containers/" + id + "/checkpoints";
  CRYO_TRY(sys::mkdir_p(to, 0700));
  auto cp = sys::run_command({"cp", "-a", dir + "/container/checkpoint", to + "/cryo"});
  if (!cp) return cp.error();
  auto before = containerd_leftovers();
  auto r = call({"start", "--checkpoint", "cryo", spec.name});
  remove_containerd_leftovers(before, dir + "/container/checkpoint");
  if (!r) return r.error().context("docker could not restore the container");
  return {};
}

}  // namespace cryo::container
