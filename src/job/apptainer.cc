#include "job/apptainer.h"

#include "job/launch.h"

#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "base/sys.h"

namespace cryo::job {

namespace {

bool is_sif(const std::string& image) {
  auto st = sys::stat(image);
  return st && S_ISREG(st->st_mode);
}

std::string rootfs_of(const JobConfig& c, const store::JobDir& dir) {
  return is_sif(c.image) ? dir.file(store::JobFile::rootfs) : c.image;
}

// --engine-opt values: "--bind=SRC[:DST]", "--bind SRC[:DST]", "-B SRC[:DST]".
Result<std::vector<std::pair<std::string, std::string>>> user_binds(const std::vector<std::string>& opts) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < opts.size(); i++) {
    std::string v;
    if (opts[i].rfind("--bind=", 0) == 0) {
      v = opts[i].substr(7);
    } else if ((opts[i] == "--bind" || opts[i] == "-B") && i + 1 < opts.size()) {
      v = opts[++i];
    } else {
      return make_error("cryo does not know the Apptainer option '" + opts[i] + "'")
          .with_hint("cryo runs Apptainer images itself and takes only --bind SRC[:DST] (or -B)");
    }
    // Apptainer allows several, comma-separated.
    for (size_t start = 0; start <= v.size();) {
      size_t comma = v.find(',', start);
      std::string one = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!one.empty()) {
        auto colon = one.find(':');
        std::string src = one.substr(0, colon), dst = colon == std::string::npos ? src : one.substr(colon + 1);
        dst = dst.substr(0, dst.find(':'));  // ":ro" and the like are not supported
        if (src.empty() || src[0] != '/' || dst.empty() || dst[0] != '/')
          return make_error("the bind '" + one + "' needs absolute paths").with_hint("--engine-opt=--bind=/host/dir:/dir");
        out.emplace_back(src, dst);
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

}  // namespace

std::string apptainer_path() {
  if (!tools().apptainer.empty()) return tools().apptainer;
  if (::access("/opt/cryo/apptainer/bin/apptainer", X_OK) == 0) return "/opt/cryo/apptainer/bin/apptainer";
  for (const char* n : {"apptainer", "singularity"})
    if (std::string p = sys::find_in_path(n); !p.empty()) return p;
  return "";
}

Status prepare_apptainer_image(const JobConfig& c, const store::JobDir& dir) {
  auto st = sys::stat(c.image);
  if (!st)
    return make_error("no Apptainer image at '" + c.image + "'").with_hint("give a .sif file or a sandbox directory");
  if (S_ISDIR(st->st_mode)) {
    if (!sys::exists(c.image + "/bin") && !sys::exists(c.image + "/usr"))
      return make_error("'" + c.image + "' does not look like a container's root file system (no /bin, no /usr)");
    return {};
  }
  if (sys::exists(dir.file(store::JobFile::rootfs))) return {};
  std::string apptainer = apptainer_path();
  if (apptainer.empty())
    return make_error("a SIF image needs Apptainer to unpack it, and it is not installed")
        .with_hint("run scripts/install-apptainer.sh, set CRYO_APPTAINER, or give a sandbox directory "
                   "('apptainer build --sandbox DIR IMAGE.sif' elsewhere)");
  // The image's root file system is a SquashFS partition inside the SIF
  // file: Apptainer says where, unsquashfs unpacks it.  ('apptainer build
  // --sandbox' would too, but it runs itself again in a way that loses the
  // private libc of a relocated install.)
  auto list = sys::run_command({apptainer, "--silent", "sif", "list", c.image});
  if (!list) return list.error().context("cannot read the SIF image '" + c.image + "'");
  std::string offset;
  std::istringstream lines(*list);
  for (std::string line; std::getline(lines, line);)
    if (line.find("FS (Squashfs") != std::string::npos) {
      // ID |GROUP |LINK |START-END |TYPE
      std::vector<std::string> cols;
      std::istringstream f(line);
      for (std::string col; std::getline(f, col, '|');) cols.push_back(col);
      if (cols.size() >= 4) offset = cols[3].substr(0, cols[3].find('-'));
      offset.erase(0, offset.find_first_not_of(' '));
    }
  if (offset.empty()) return make_error("the SIF image '" + c.image + "' has no SquashFS root file system");
  if (sys::find_in_path("unsquashfs").empty())
    return make_error("unpacking a SIF image needs unsquashfs").with_hint("install Debian's squashfs-tools");
  std::string tmp = store::temp_path(dir.path(), "rootfs");
  auto r = sys::run_command({"unsquashfs", "-no-progress", "-o", offset, "-d", tmp, c.image});
  if (!r) {
    (void)sys::remove_tree(tmp);
    return r.error().context("cannot unpack the SIF image '" + c.image + "'");
  }
  return sys::rename(tmp, dir.file(store::JobFile::rootfs));
}

Result<ContainerRoot> apptainer_root(const JobConfig& c, const store::JobDir& dir, const std::string& init_path) {
  ContainerRoot r;
  r.rootfs = rootfs_of(c, dir);
  for (const char* d : {"null", "zero", "full", "random", "urandom", "tty"})
    r.binds.push_back({std::string("/dev/") + d, std::string("/dev/") + d, std::string("dev-") + d});
  r.binds.push_back({init_path, "/dev/.cryo-init", "cryo-init"});
  auto user = user_binds(c.engine_options);
  if (!user) return user.error();
  int n = 0;
  for (const auto& [src, dst] : *user) r.binds.push_back({src, dst, "bind-" + std::to_string(n++)});
  // As Apptainer does: the job starts where it was started, that directory
  // bound from the host.
  if (c.cwd != "/") {
    bool bound = false;
    for (const auto& b : r.binds) bound |= b.dst == c.cwd;
    if (!bound) r.binds.push_back({c.cwd, c.cwd, "cwd"});
    r.workdir = c.cwd;
  }
  return r;
}

std::vector<std::string> init_binds(const ContainerRoot& r) {
  std::vector<std::string> out;
  for (const auto& b : r.binds)
    if (b.key.rfind("bind-", 0) == 0 || b.key == "cwd") out.push_back(b.src + ":" + b.dst);
  return out;
}

std::vector<std::string> dump_externals(const ContainerRoot& r) {
  std::vector<std::string> out;
  for (const auto& b : r.binds) out.push_back("mnt[" + b.dst + "]:" + b.key);
  return out;
}

std::vector<std::string> restore_externals(const ContainerRoot& r) {
  std::vector<std::string> out;
  for (const auto& b : r.binds) out.push_back("mnt[" + b.key + "]:" + b.src);
  return out;
}

}  // namespace cryo::job
