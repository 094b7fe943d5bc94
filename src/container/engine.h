// Container engines that checkpoint and restore their own containers
// (Podman, Docker), driven through their command-line clients.  cryo keeps
// what they produce in its store like any checkpoint: every file checksummed,
// compressed and deduplicated (store/), and restores it into a new
// container of the same name, on this node or another.
//
//   Podman:  'podman container checkpoint --export' writes a tar, which is
//            unpacked into the dump so that its images dedup file by file;
//            a restore packs it again for 'podman container restore --import'.
//   Docker:  'docker checkpoint create' writes CRIU's images under the
//            daemon's data root; a restore creates the container anew, puts
//            the images into its checkpoints/ and starts it from them.
//
// The engine must find CRIU >= 4.2 as 'criu' in PATH (runc looks it up
// there); cryo puts its CRIU's directory first in PATH.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "container/log.h"

namespace cryo::container {

enum class Kind { podman, docker };
const char* kind_name(Kind k);
Result<Kind> parse_kind(const std::string& name);

struct RunSpec {
  std::string name;                  // the container's name
  std::string image;
  std::vector<std::string> command;  // "" = the image's own
  std::vector<std::string> options;  // more 'run' options, from --engine-opt
  std::vector<std::string> env;      // NAME=value
  std::string criu_config;           // Podman: a CRIU config file for runc (org.criu.config)
};

struct Info {
  std::string id;
  pid_t pid = 0;  // host PID of the container's init, 0 if not running
  bool running = false;
  bool paused = false;
  std::string log_path;
  std::string ip;  // on the engine's default network, "" if none
};

class Engine {
 public:
  explicit Engine(Kind k) : kind_(k) {}
  Kind kind() const { return kind_; }
  const char* client() const { return kind_name(kind_); }
  LogFormat log_format() const { return kind_ == Kind::podman ? LogFormat::k8s_file : LogFormat::json_file; }

  // The client runs and reaches its engine; the error says how to fix it.
  Result<std::string> version() const;
  // The image is on this node.
  Status check_image(const std::string& image) const;
  // Creates and starts the container, detached.
  Status run(const RunSpec& spec) const;
  Result<Info> inspect(const std::string& name) const;
  // Waits for the container to end; its exit status.
  Result<int> wait(const std::string& name) const;
  Status kill(const std::string& name, int sig) const;
  Status pause(const std::string& name) const;
  Status unpause(const std::string& name) const;
  // Removes the container (killing it); absent is fine.
  Status remove(const std::string& name) const;
  // Checkpoints the running container into dir, leaving it running.
  Status checkpoint(const std::string& name, const std::string& dir, bool tcp_established) const;
  // Restores what checkpoint() wrote into dir as the container spec.name
  // (removing a container of that name first).  Podman's checkpoint carries
  // the container's log: it is restored cut to log_cut bytes.
  Status restore(const RunSpec& spec, const std::string& dir, bool tcp_established, uint64_t log_cut) const;

 private:
  Result<std::string> call(const std::vector<std::string>& args) const;
  Kind kind_;
};

}  // namespace cryo::container
