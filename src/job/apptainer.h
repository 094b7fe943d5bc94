// Apptainer (Singularity) images, run by cryo itself.
//
// Apptainer's own runtime cannot be checkpointed: its starter process
// moves into a new mount namespace after it was executed, so CRIU finds
// its executable on a mount that namespace does not have ("Can't lookup
// mount"); and it needs a /proc that matches its PID namespace, which a
// job in cryo's PID namespace would not have.  So cryo runs the image the
// way Apptainer would, under cryo-init (init_main.cc --root): in its own
// PID and mount namespaces, the image's root file system read-only, a new
// /proc, a minimal /dev, a tmpfs /tmp, and the job's working directory and
// any --bind from the host.  CRIU then dumps that one mount namespace, the
// binds from the host declared external, and restores it with the image
// as its root.  A SIF image is unpacked once (its SquashFS partition, with
// unsquashfs) into the job's directory in the store; a sandbox directory
// is used where it is (cryo creates the mount points it needs in it).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "job/config.h"
#include "store/store.h"

namespace cryo::job {

struct ContainerRoot {
  std::string rootfs;
  struct Bind {
    std::string src, dst, key;  // key: its name for CRIU (--external)
  };
  std::vector<Bind> binds;  // from the host: cryo-init's and the devices' first
  std::string workdir;      // where COMMAND starts
};

// Where Apptainer is: tools().apptainer (job/launch.h), else scripts/install-apptainer.sh's
// /opt/cryo/apptainer/bin/apptainer, else apptainer or singularity in PATH;
// "" if none.
std::string apptainer_path();

// Checks IMAGE and, for a SIF image, unpacks it into <job dir>/rootfs.
Status prepare_apptainer_image(const JobConfig& c, const store::JobDir& dir);
// The container's root, binds and working directory.
Result<ContainerRoot> apptainer_root(const JobConfig& c, const store::JobDir& dir, const std::string& init_path);

// cryo-init's --bind arguments (the user's and the working directory's;
// cryo-init adds the devices and itself).
std::vector<std::string> init_binds(const ContainerRoot& r);
// CRIU's --external for a dump ("mnt[MOUNTPOINT]:KEY") and a restore
// ("mnt[KEY]:HOST_PATH").
std::vector<std::string> dump_externals(const ContainerRoot& r);
std::vector<std::string> restore_externals(const ContainerRoot& r);

}  // namespace cryo::job
