// What a checkpoint's CRIU images say each thread is restored as, checked
// before CRIU is asked to restore them.  CRIU, run as root, gives every
// thread the ids and capabilities its core image names; a signed
// checkpoint of a user's job holds only hers, but the check does not rely
// on the signature (a key that leaked, or a root who signed what he should
// not have): a restore for a user refuses any thread that would hold more
// than she does.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "base/identity.h"
#include "base/result.h"

namespace cryo::job {

// The ids and capabilities in one core image (core-TID.img).
Result<ProcessCreds> image_creds(const std::string& core_image, const std::string& what);
// Every core image in the images directory `dir_fd` holds no more than
// `owner` (nothing to check for root).  Fails (kind denied) naming the
// thread and what it would hold; an image that does not read is corrupt.
Status check_image_creds(int dir_fd, const Identity& owner, const std::string& checkpoint);

// What the images say CRIU opens again by path: each regular file or
// directory the tree had open, mapped, as its executable or its working
// or root directory (files.img), the mounts they are on
// (mountpoints-*.img), and which of them had lost their name and come
// back from the images (remap-fpath.img).
struct ImageFile {
  uint32_t id = 0;
  uint32_t flags = 0;  // as the job opened it (O_ACCMODE, O_PATH, ...)
  std::string path;    // in the job's mount namespace
  int32_t mnt_id = -1;
  bool external = false;
};
struct ImageMount {
  uint32_t id = 0;
  uint32_t parent = 0;
  std::string point;
  std::string ext_key;  // a mount bound back from the node
};
struct ImageFiles {
  std::vector<ImageFile> files;
  std::vector<ImageMount> mounts;
  std::set<uint32_t> remapped;  // ids of files CRIU makes again, or links from another name
  // The paths of the Unix sockets bound to one (not unbound or abstract),
  // which CRIU binds and connects to again: absolute, or relative as bound.
  std::vector<std::string> socket_paths;
};
// Reads them from the images directory `dir_fd`; a damaged image is corrupt.
Result<ImageFiles> image_files(int dir_fd, const std::string& checkpoint);
// Adds what the image named `name`, whose text is `image`, says (a seam
// for tests; images other than those three add nothing).
Status add_image_files(const std::string& image, const std::string& name, const std::string& checkpoint,
                       ImageFiles& out);

}  // namespace cryo::job
