// cryod: cryo's service, through which users who are not root run and
// restore jobs (src/service/service.h; docs/security.md, docs/admin.md).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "base/sys.h"
#include "config/settings.h"
#include "criu/client.h"
#include "service/service.h"

namespace {

int fail(const cryo::Error& e) {
  std::fprintf(stderr, "cryod: error: %s\n", e.message.c_str());
  if (!e.hint.empty()) std::fprintf(stderr, "  hint: %s\n", e.hint.c_str());
  return 1;
}

// The cryo installed with cryod: beside it (a build tree) or in ../bin
// (cryod in sbin).
std::string default_cryo() {
  std::string dir = cryo::sys::self_dir();
  return cryo::sys::exists(dir + "/cryo") ? dir + "/cryo" : dir + "/../bin/cryo";
}

}  // namespace

int main(int argc, char** argv) {
  auto env = cryo::config::process_environment();
  auto settings = cryo::config::load(env, cryo::config::current_user());
  if (!settings) return fail(settings.error());
  cryo::service::DaemonOptions o;
  o.socket = settings->service_socket;
  o.cryo = default_cryo();
  o.criu = settings->criu.empty() ? cryo::criu::default_path() : settings->criu;
  CLI::App app{"cryod: cryo's service.  Users who are not root run and restore jobs through it;\n"
               "it starts cryo as root for each, acting for her (docs/security.md).",
               "cryod"};
  app.add_option("--socket", o.socket, "Where it listens (default: cryo.conf's [service] socket, /run/cryo/cryod.sock)")
      ->type_name("PATH");
  app.add_option("--cryo", o.cryo, "The cryo it starts (default: the one installed with cryod)")->type_name("PATH");
  CLI11_PARSE(app, argc, argv);
  if (::geteuid() != 0)
    return fail(cryo::make_error(cryo::ErrorKind::denied, "cryod runs as root: it starts CRIU for users")
                               .with_hint("start it as root, or through its systemd unit (docs/admin.md)"));
  // Started by systemd's cryod.socket: the socket is fd 3 (sd_listen_fds(3)).
  if (env.count("LISTEN_FDS") && std::atoi(env["LISTEN_FDS"].c_str()) == 1 &&
      std::atoi(env["LISTEN_PID"].c_str()) == ::getpid())
    o.listen_fd = 3;
  for (const char* k : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}) env.erase(k);
  for (const auto& [k, v] : env) o.env.push_back(k + "=" + v);
  auto st = cryo::service::serve(o);
  return st ? 0 : fail(st.error());
}
