// What a checkpoint's CRIU images say each thread is restored as, checked
// before CRIU is asked to restore them.  CRIU, run as root, gives every
// thread the ids and capabilities its core image names; a signed
// checkpoint of a user's job holds only hers, but the check does not rely
// on the signature (a key that leaked, or a root who signed what he should
// not have): a restore for a user refuses any thread that would hold more
// than she does.
#pragma once

#include <string>

#include "base/identity.h"
#include "base/result.h"

namespace cryo::job {

// The ids and capabilities in one core image (core-TID.img).
Result<ProcessCreds> image_creds(const std::string& core_image, const std::string& what);
// Every core image in the images directory `dir_fd` holds no more than
// `owner` (nothing to check for root).  Fails (kind denied) naming the
// thread and what it would hold; an image that does not read is corrupt.
Status check_image_creds(int dir_fd, const Identity& owner, const std::string& checkpoint);

}  // namespace cryo::job
