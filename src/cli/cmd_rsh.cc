// cryo rsh HOST COMMAND...: not for people, and not parsed like the other
// verbs (main.cc hands it its arguments untouched).  A multi-node job's Open MPI
// launcher runs it as its rsh agent (OMPI_MCA_plm_rsh_agent) to start a
// daemon in another part: the job's supervisor has that part's agent run
// COMMAND there (src/coord/coordinator.h).
#include <cstdlib>

#include "cli/common.h"
#include "job/control.h"

namespace cryo::cli {

namespace {

int rsh(const std::string& host, const std::vector<std::string>& argv, const config::Settings& settings) {
  std::string job = settings.get("CRYO_JOB");
  std::string store = settings.get("CRYO_STORE");
  if (job.empty() || store.empty())
    return fail(make_error("cryo rsh runs inside a multi-node job only (CRYO_JOB and CRYO_STORE are not set)"));
  auto c = job::control_connect(store + "/" + job);
  if (!c) return fail(c.error().context("cannot reach the supervisor of job '" + job + "'"));
  control::Request req;
  req.set_version(job::kControlVersion);
  req.mutable_spawn()->set_host(host);
  for (const auto& a : argv) req.mutable_spawn()->add_argv(a);
  if (auto st = job::send_message(c->get(), req); !st) return fail(st.error());
  control::Reply r;
  if (auto st = job::recv_message(c->get(), r); !st) return fail(st.error());
  if (r.has_failure()) return fail(job::failure_error(r.failure()));
  return 0;
}

}  // namespace

int rsh_main(int argc, char** argv, const config::Settings& settings) {
  // Open MPI quotes words for a remote shell: they go on as they are.
  if (argc < 4) return fail(make_error("usage: cryo rsh HOST COMMAND [ARGS...]"));
  return rsh(argv[2], std::vector<std::string>(argv + 3, argv + argc), settings);
}

}  // namespace cryo::cli
