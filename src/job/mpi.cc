#include "job/mpi.h"

#include "base/sys.h"

namespace cryo::job {

const char* mpi_name(Mpi m) {
  switch (m) {
    case Mpi::openmpi: return "openmpi";
    case Mpi::mpich: return "mpich";
    case Mpi::none: return "none";
  }
  return "?";
}

Result<Mpi> parse_mpi(const std::string& name) {
  if (name == "openmpi") return Mpi::openmpi;
  if (name == "mpich") return Mpi::mpich;
  if (name == "none") return Mpi::none;
  return make_error("unknown MPI '" + name + "'").with_hint("use auto, openmpi, mpich or none");
}

namespace {
// command[0] as execvp would find it, with symlinks resolved.
std::string resolve(const std::string& cmd) {
  std::string found = sys::find_in_path(cmd);
  if (found.empty()) return cmd;
  auto real = sys::realpath(found);
  return real ? *real : found;
}
}  // namespace

Mpi detect_mpi(const std::vector<std::string>& command) {
  if (command.empty()) return Mpi::none;
  std::string real = resolve(command[0]);
  std::string base = real.substr(real.rfind('/') + 1);
  std::string asked = command[0].substr(command[0].rfind('/') + 1);
  if (base == "orterun" || base == "prterun" || asked.ends_with(".openmpi")) return Mpi::openmpi;
  if (base == "mpiexec.hydra" || base == "hydra_pmi_proxy" || asked.ends_with(".mpich")) return Mpi::mpich;
  return Mpi::none;
}

std::string legacy_shm_dir(const std::string& job_name, int part) {
  return "/dev/shm/cryo-" + job_name + (part < 0 ? "" : "-p" + std::to_string(part));
}

std::vector<std::string> mpi_environment(Mpi m, const std::string& session_dir, bool as_root) {
  std::vector<std::string> env;
  if (m == Mpi::openmpi) {
    env.push_back("OMPI_MCA_orte_tmpdir_base=" + session_dir);
    env.push_back("OMPI_MCA_btl_vader_backing_directory=/dev/shm");
    // Every rank on this node, under the one init: no daemons started
    // elsewhere (by srun or ssh), which the checkpoint would not hold.
    env.push_back("OMPI_MCA_plm=isolated");
    env.push_back("OMPI_MCA_ras=^slurm");
    // cryo runs as root (CRIU needs it), and so does the job.
    if (as_root) {
      env.push_back("OMPI_ALLOW_RUN_AS_ROOT=1");
      env.push_back("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1");
    }
  }
  if (m == Mpi::mpich) {
    env.push_back("HYDRA_LAUNCHER=fork");
    env.push_back("HYDRA_RMK=user");
  }
  return env;
}

Status prepare_mpi_dirs(Mpi m, const std::string& session_dir) {
  if (m == Mpi::none) return {};
  return sys::mkdir_p(session_dir, 0700);
}

}  // namespace cryo::job
