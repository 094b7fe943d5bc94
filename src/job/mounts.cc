#include "job/mounts.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>

#include "base/sys.h"

namespace cryo::job {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::vector<MountEntry> parse_mountinfo(const std::string& text) {
  std::vector<MountEntry> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    // ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    std::istringstream f(line);
    std::string id, parent, devno, root, point, opts, field;
    if (!(f >> id >> parent >> devno >> root >> point >> opts)) continue;
    while (f >> field && field != "-") {
    }
    MountEntry m;
    if (!(f >> m.fstype)) continue;
    unsigned maj = 0, min = 0;
    if (std::sscanf(devno.c_str(), "%u:%u", &maj, &min) != 2) continue;
    m.dev = makedev(maj, min);
    m.point = unescape(point);
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<MountEntry>> read_mounts(pid_t pid) {
  auto text = sys::read_file("/proc/" + std::to_string(pid) + "/mountinfo");
  if (!text) return text.error();
  return parse_mountinfo(*text);
}

JobMounts split_mounts(const std::vector<MountEntry>& job, const std::vector<MountEntry>& node) {
  std::set<dev_t> node_devs;
  for (const auto& m : node) node_devs.insert(m.dev);
  JobMounts out;
  for (const auto& m : job) {
    if (m.point == "/") continue;  // the root: CRIU's --root
    if (!node_devs.count(m.dev)) {
      out.own.insert(m.dev);
    } else if (std::find(out.host.begin(), out.host.end(), m.point) == out.host.end()) {
      out.host.push_back(m.point);
    }
  }
  return out;
}

Result<JobMounts> job_mounts(pid_t job_pid) {
  auto ns = sys::stat("/proc/" + std::to_string(job_pid) + "/ns/mnt");
  auto self = sys::stat("/proc/self/ns/mnt");
  if (!ns || !self) return (ns ? self : ns).error().context("cannot tell the job's mount namespace");
  if (ns->st_ino == self->st_ino && ns->st_dev == self->st_dev) return JobMounts{};
  auto job = read_mounts(job_pid);
  if (!job) return job.error().context("cannot read the job's mounts");
  auto node = read_mounts(::getpid());
  if (!node) return node.error().context("cannot read the node's mounts");
  JobMounts out = split_mounts(*job, *node);
  out.own_namespace = true;
  return out;
}

std::vector<std::string> mount_externals(const std::vector<std::string>& host) {
  std::vector<std::string> out;
  for (const auto& p : host) out.push_back("mnt[" + p + "]:" + p);
  return out;
}

}  // namespace cryo::job
