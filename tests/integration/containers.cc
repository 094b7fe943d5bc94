#include "containers.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.h"

namespace cryo::test {

namespace fs = std::filesystem;

std::string build_rootfs(const std::string& dir) {
  std::string r = dir + "/rootfs";
  for (const char* d : {"bin", "dev", "proc", "sys", "tmp", "etc", "go", "root", "var/tmp"}) fs::create_directories(r + "/" + d);
  fs::copy_file("/bin/busybox", r + "/bin/busybox", fs::copy_options::overwrite_existing);
  fs::create_symlink("busybox", r + "/bin/sh");
  for (const char* p : {"ticker", "tcppeer", "solver"})
    fs::copy_file(std::string(CRYO_PROGS) + "/" + p + "-static", r + "/bin/" + p, fs::copy_options::overwrite_existing);
  for (const char* f : {"etc/hosts", "etc/resolv.conf", "etc/passwd", "etc/group"}) std::ofstream(r + "/" + f) << "";
  return r;
}

std::string podman_image(const std::string& rootfs, const std::string& tag) {
  std::string image = "localhost/cryo-it:" + tag;
  sh("tar -C " + rootfs + " -cf " + rootfs + ".tar . && podman import -q " + rootfs + ".tar " + image + " >/dev/null 2>&1");
  return image;
}

std::string sif_image(const std::string& rootfs, const std::string& dir) {
  std::string apptainer = "/opt/cryo/apptainer/bin/apptainer";
  if (::access(apptainer.c_str(), X_OK) != 0) return "";
  std::string sif = dir + "/image.sif";
  int rc;
  sh(apptainer + " --silent build " + sif + " " + rootfs + " >/dev/null 2>&1", &rc);
  return rc == 0 ? sif : "";
}

DockerDaemon::DockerDaemon(const std::string& dir) : dir_(dir + "/docker") {
  fs::create_directories(dir_ + "/data");
  // The exec root holds sockets: keep its path short.
  char t[] = "/run/cryo-it-docker-XXXXXX";
  exec_root_ = ::mkdtemp(t);
  host_ = "unix://" + dir_ + "/docker.sock";
  log_ = dir_ + "/dockerd.log";
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setpgid(0, 0);
    std::string path = "PATH=/opt/cryo/criu/bin:" + std::string(::getenv("PATH") ? ::getenv("PATH") : "/usr/bin:/bin");
    ::putenv(path.data());
    std::freopen(log_.c_str(), "w", stdout);
    std::freopen(log_.c_str(), "a", stderr);
    ::execlp("dockerd", "dockerd", "--experimental", "--data-root", (dir_ + "/data").c_str(), "--exec-root",
             exec_root_.c_str(), "-H", host_.c_str(), "--pidfile", (dir_ + "/docker.pid").c_str(), nullptr);
    ::_exit(127);
  }
  for (int i = 0; i < 300; i++) {
    int rc;
    sh("DOCKER_HOST=" + host_ + " docker version >/dev/null 2>&1", &rc);
    if (rc == 0) return;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

DockerDaemon::~DockerDaemon() {
  if (pid_ > 0) {
    sh("DOCKER_HOST=" + host_ + " docker rm -f $(DOCKER_HOST=" + host_ + " docker ps -aq) >/dev/null 2>&1");
    ::kill(pid_, SIGTERM);  // it stops its containerd and unmounts what it mounted
    for (int i = 0; i < 150 && ::waitpid(pid_, nullptr, WNOHANG) == 0; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, WNOHANG);
  }
  // Whatever is still mounted below the data root (a killed daemon's layers).
  sh("grep -o ' " + dir_ + "[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null");
  fs::remove_all(exec_root_);
  fs::remove_all(dir_);
}

std::string DockerDaemon::image(const std::string& rootfs, const std::string& tag) {
  std::string image = "cryo-it:" + tag;
  sh("tar -C " + rootfs + " -cf " + rootfs + ".tar . && DOCKER_HOST=" + host_ + " docker import " + rootfs + ".tar " +
     image + " >/dev/null 2>&1");
  return image;
}

}  // namespace cryo::test
