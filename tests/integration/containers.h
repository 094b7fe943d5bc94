// Container images and engines for the tests, all local: no registry can
// be reached.  The image is a busybox-static root file system with the
// static test programs in /bin; each engine gets it its own way.
#pragma once

#include <sys/types.h>

#include <string>

namespace cryo::test {

// Builds the root file system (once per test) in dir/rootfs; returns its path.
std::string build_rootfs(const std::string& dir);
// `podman import` of it; returns the image name.
std::string podman_image(const std::string& rootfs, const std::string& tag);
// A SIF image of it ('apptainer build'); returns its path, "" if Apptainer is missing.
std::string sif_image(const std::string& rootfs, const std::string& dir);

// A Docker daemon of the test's own: experimental, its own data root, exec
// root and socket, CRIU first in its PATH.  Stopped (by PID) and cleaned up
// on destruction.
class DockerDaemon {
 public:
  explicit DockerDaemon(const std::string& dir);
  ~DockerDaemon();
  bool up() const { return pid_ > 0; }
  const std::string& host() const { return host_; }  // for DOCKER_HOST
  const std::string& log() const { return log_; }
  // `docker import` of the root file system; returns the image name.
  std::string image(const std::string& rootfs, const std::string& tag);

 private:
  pid_t pid_ = -1;
  std::string dir_, exec_root_, host_, log_;
};

}  // namespace cryo::test
