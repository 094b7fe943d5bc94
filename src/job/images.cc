#include "job/images.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "base/sys.h"
#include "criu_image.pb.h"

namespace cryo::job {

namespace {

// Every CRIU image starts with this magic, then the image's own.
constexpr uint32_t kImageMagic = 0x54564319;

Result<std::vector<std::string>> image_names(int dir_fd, const std::string& checkpoint) {
  // A descriptor of its own: a listing through a duplicate would start
  // where the last one ended, on a streamed checkpoint's file system.
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sys_error("cannot read the images of checkpoint " + checkpoint);
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return sys_error("cannot read the images of checkpoint " + checkpoint);
  }
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) out.push_back(e->d_name);
  ::closedir(d);
  return out;
}

uint64_t caps(const google::protobuf::RepeatedField<uint32_t>& words) {
  uint64_t v = 0;
  for (int k = 0; k < words.size() && k < 2; k++) v |= uint64_t{words.Get(k)} << (32 * k);
  for (int k = 2; k < words.size(); k++)
    if (words.Get(k)) v |= uint64_t{1} << 63;  // a capability beyond 64: count it as one
  return v;
}

// Calls fn with each entry of a CRIU image (after its two magics, each
// entry is its size, 32 bits, then its message).
Status for_each_entry(const std::string& image, const std::string& what,
                      const std::function<bool(const char*, int)>& fn) {
  auto bad = [&](const std::string& why) { return make_error(ErrorKind::corrupt, what + " does not read: " + why); };
  if (image.size() < 8) return bad("too short");
  uint32_t magic;
  std::memcpy(&magic, image.data(), 4);
  if (magic != kImageMagic) return bad("not a CRIU image");
  size_t at = 8;
  while (at < image.size()) {
    uint32_t size;
    if (image.size() - at < 4) return bad("an entry is cut short");
    std::memcpy(&size, image.data() + at, 4);
    at += 4;
    if (size > image.size() - at) return bad("an entry runs past its end");
    if (!fn(image.data() + at, static_cast<int>(size))) return bad("an entry does not parse");
    at += size;
  }
  return {};
}

}  // namespace

Status add_image_files(const std::string& image, const std::string& name, const std::string& checkpoint,
                       ImageFiles& out) {
  std::string what = "the image " + name + " of checkpoint " + checkpoint;
  if (name == "files.img")
    return for_each_entry(image, what, [&](const char* p, int n) {
      criu_image::FileEntry e;
      if (!e.ParseFromArray(p, n)) return false;
      if (e.type() == 1 && e.has_reg())
        out.files.push_back({e.reg().id(), e.reg().flags(), e.reg().name(), e.reg().mnt_id(), e.reg().ext()});
      if (e.type() == 5 && e.has_usk() && !e.usk().name().empty() && e.usk().name()[0] != '\0') {
        // As the kernel gave it: a path ends at its NUL.
        std::string name = e.usk().name().substr(0, e.usk().name().find('\0'));
        out.socket_paths.push_back(name[0] == '/' || e.usk().name_dir().empty() ? name
                                                                                 : e.usk().name_dir() + "/" + name);
      }
      return true;
    });
  if (name.starts_with("mountpoints-"))
    return for_each_entry(image, what, [&](const char* p, int n) {
      criu_image::MntEntry e;
      if (!e.ParseFromArray(p, n)) return false;
      out.mounts.push_back({e.mnt_id(), e.parent_mnt_id(), e.mountpoint(), e.ext_key()});
      return true;
    });
  if (name == "remap-fpath.img")
    return for_each_entry(image, what, [&](const char* p, int n) {
      criu_image::RemapFilePathEntry e;
      if (!e.ParseFromArray(p, n)) return false;
      out.remapped.insert(e.orig_id());
      return true;
    });
  return {};
}

Result<ImageFiles> image_files(int dir_fd, const std::string& checkpoint) {
  auto names = image_names(dir_fd, checkpoint);
  if (!names) return names.error();
  ImageFiles out;
  for (const auto& n : *names) {
    if (n != "files.img" && n != "remap-fpath.img" && !(n.starts_with("mountpoints-") && n.ends_with(".img"))) continue;
    auto f = sys::openat(dir_fd, n, O_RDONLY | O_NOFOLLOW);
    if (!f) return f.error();
    auto text = sys::read_all(f->get(), n);
    if (!text) return text.error();
    CRYO_TRY(add_image_files(*text, n, checkpoint, out));
  }
  return out;
}

Result<ProcessCreds> image_creds(const std::string& core_image, const std::string& what) {
  criu_image::Core core;
  bool read = false;
  CRYO_TRY(for_each_entry(core_image, what, [&](const char* p, int n) {
    if (read) return true;  // a core image has one entry
    read = true;
    return core.ParseFromArray(p, n);
  }));
  if (!core.has_thread_core() || !core.thread_core().has_creds())
    return make_error(ErrorKind::corrupt, what + " does not read: it names no credentials");
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
  auto names = image_names(dir_fd, checkpoint);
  if (!names) return names.error();
  std::vector<std::string> cores;
  for (const auto& n : *names)
    if (n.starts_with("core-") && n.size() > 9 && n.ends_with(".img")) cores.push_back(n);
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
