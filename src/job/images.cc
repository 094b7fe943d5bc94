#include "job/images.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "base/sys.h"
#include "criu_image.pb.h"

namespace cryo::job {

namespace {

// Every CRIU image starts with this magic, then the image's own.
constexpr uint32_t kImageMagic = 0x54564319;

uint64_t caps(const google::protobuf::RepeatedField<uint32_t>& words) {
  uint64_t v = 0;
  for (int k = 0; k < words.size() && k < 2; k++) v |= uint64_t{words.Get(k)} << (32 * k);
  for (int k = 2; k < words.size(); k++)
    if (words.Get(k)) v |= uint64_t{1} << 63;  // a capability beyond 64: count it as one
  return v;
}

}  // namespace

Result<ProcessCreds> image_creds(const std::string& core_image, const std::string& what) {
  auto bad = [&](const std::string& why) { return make_error(ErrorKind::corrupt, what + " does not read: " + why); };
  if (core_image.size() < 12) return bad("too short");
  uint32_t magic, size;
  std::memcpy(&magic, core_image.data(), 4);
  std::memcpy(&size, core_image.data() + 8, 4);
  if (magic != kImageMagic) return bad("not a CRIU image");
  if (size > core_image.size() - 12) return bad("its entry runs past its end");
  criu_image::Core core;
  if (!core.ParseFromArray(core_image.data() + 12, static_cast<int>(size))) return bad("its entry does not parse");
  if (!core.has_thread_core() || !core.thread_core().has_creds()) return bad("it names no credentials");
  const auto& c = core.thread_core().creds();
  ProcessCreds p;
  uint32_t uids[4] = {c.uid(), c.euid(), c.suid(), c.fsuid()};
  uint32_t gids[4] = {c.gid(), c.egid(), c.sgid(), c.fsgid()};
  for (int k = 0; k < 4; k++) {
    p.uid[k] = uids[k];
    p.gid[k] = gids[k];
  }
  for (uint32_t g : c.groups()) p.groups.push_back(g);
  p.cap_inh = caps(c.cap_inh());
  p.cap_prm = caps(c.cap_prm());
  p.cap_eff = caps(c.cap_eff());
  p.cap_amb = caps(c.cap_amb());
  return p;
}

Status check_image_creds(int dir_fd, const Identity& owner, const std::string& checkpoint) {
  if (owner.uid == 0) return {};
  int fd = ::dup(dir_fd);
  if (fd < 0) return sys_error("cannot read the images of checkpoint " + checkpoint);
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return sys_error("cannot read the images of checkpoint " + checkpoint);
  }
  ::rewinddir(d);
  std::vector<std::string> cores;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.rfind("core-", 0) == 0 && n.size() > 9 && n.compare(n.size() - 4, 4, ".img") == 0) cores.push_back(n);
  }
  ::closedir(d);
  if (cores.empty())
    return make_error(ErrorKind::corrupt, "checkpoint " + checkpoint + " has no core image to say what its threads are");
  for (const auto& n : cores) {
    auto f = sys::openat(dir_fd, n, O_RDONLY | O_NOFOLLOW);
    if (!f) return f.error();
    auto text = sys::read_all(f->get(), n);
    if (!text) return text.error();
    std::string what = "the image " + n + " of checkpoint " + checkpoint;
    auto creds = image_creds(*text, what);
    if (!creds) return creds.error();
    if (std::string more = privilege_beyond(*creds, owner); !more.empty())
      return make_error(ErrorKind::denied, fmt::format("checkpoint {} is not restored: its thread {} would run with more "
                                                       "privilege than the job's owner {}: {}",
                                                       checkpoint, n.substr(5, n.size() - 9), sys::user_name(owner.uid),
                                                       more))
          .with_hint("a job of a user is restored only as that user; this checkpoint was not made by cryo for her, "
                     "or was changed and signed again (docs/security.md)");
  }
  return {};
}

}  // namespace cryo::job
