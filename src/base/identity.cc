#include "base/identity.h"

#include <grp.h>
#include <sys/fsuid.h>
#include <linux/capability.h>
#include <unistd.h>

#include <cstdlib>

#include <algorithm>
#include <cctype>
#include <sstream>

#include <fmt/format.h>

#include "base/sys.h"

namespace cryo {

namespace {
Identity g_acting = Identity::of_process();
bool g_other = false;

Result<uint64_t> number(const std::string& s, const std::string& what, int base = 10) {
  if (s.empty()) return make_error(ErrorKind::usage, "no " + what);
  for (char c : s)
    if (!(base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) : std::isdigit(static_cast<unsigned char>(c))))
      return make_error(ErrorKind::usage, "bad " + what + ": '" + s + "'");
  size_t end = 0;
  uint64_t v = 0;
  try {
    v = std::stoull(s, &end, base);
  } catch (...) {
    end = 0;
  }
  if (end != s.size()) return make_error(ErrorKind::usage, "bad " + what + ": '" + s + "'");
  return v;
}
}  // namespace

std::string Identity::text() const {
  std::string g;
  for (gid_t x : groups) g += (g.empty() ? "" : ",") + std::to_string(x);
  return fmt::format("{}:{}:{}", uid, gid, g);
}

Result<Identity> Identity::parse(const std::string& text) {
  Identity id;
  auto a = text.find(':'), b = a == std::string::npos ? a : text.find(':', a + 1);
  if (b == std::string::npos) return make_error(ErrorKind::usage, "an identity is UID:GID:GROUPS, not '" + text + "'");
  auto u = number(text.substr(0, a), "uid");
  if (!u) return u.error();
  auto g = number(text.substr(a + 1, b - a - 1), "gid");
  if (!g) return g.error();
  id.uid = static_cast<uid_t>(*u);
  id.gid = static_cast<gid_t>(*g);
  std::stringstream ss(text.substr(b + 1));
  for (std::string item; std::getline(ss, item, ',');) {
    auto x = number(item, "group");
    if (!x) return x.error();
    id.groups.push_back(static_cast<gid_t>(*x));
  }
  return id;
}

Identity Identity::of_process() {
  Identity id;
  id.uid = ::getuid();
  id.gid = ::getgid();
  int n = ::getgroups(0, nullptr);
  if (n > 0) {
    id.groups.resize(static_cast<size_t>(n));
    n = ::getgroups(n, id.groups.data());
    id.groups.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  return id;
}

const Identity& acting_for() { return g_acting; }
bool acting_for_other() { return g_other; }

Status act_for(const Identity& who) {
  if (::geteuid() != 0) return make_error(ErrorKind::denied, "only root can act for another user");
  if (::setgroups(who.groups.size(), who.groups.data()) < 0) return sys_error("cannot take on the user's groups");
  ::setfsgid(who.gid);
  ::setfsuid(who.uid);
  if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != who.uid)
    return make_error(ErrorKind::denied, "cannot take on the user's file-system identity");
  g_acting = who;
  g_other = who.uid != 0;
  return {};
}

FsIdentity::FsIdentity(bool root) {
  if (!g_other) return;
  gid_ = static_cast<gid_t>(::setfsgid(root ? 0 : g_acting.gid));
  uid_ = static_cast<uid_t>(::setfsuid(root ? 0 : g_acting.uid));
  changed_ = true;
}

FsIdentity::~FsIdentity() {
  if (!changed_) return;
  ::setfsuid(uid_);
  ::setfsgid(gid_);
}

bool lacks_sys_resource() {
  // The bounding set does not grow: read once.
  static const bool lacks = [] {
    auto status = sys::read_file("/proc/self/status");
    auto at = status ? status->find("CapBnd:") : std::string::npos;
    if (at == std::string::npos) return false;
    uint64_t bounding = std::strtoull(status->c_str() + at + 7, nullptr, 16);
    return !(bounding & (uint64_t{1} << CAP_SYS_RESOURCE));
  }();
  return lacks;
}

bool lends_real_ids() { return g_other && lacks_sys_resource(); }

void lend_real_ids_for_criu() {
  if (!lends_real_ids()) return;
  (void)!::setresgid(g_acting.gid, 0, 0);
  (void)!::setresuid(g_acting.uid, 0, 0);
}

Result<ProcessCreds> parse_process_status(const std::string& status_text) {
  ProcessCreds p;
  int seen = 0;
  std::stringstream in(status_text);
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::stringstream fields(line.substr(colon + 1));
    std::vector<std::string> v;
    for (std::string f; fields >> f;) v.push_back(f);
    auto ids = [&](auto* out) -> Status {
      if (v.size() != 4) return make_error(ErrorKind::corrupt, "bad " + key + " line in a process's status");
      for (size_t k = 0; k < 4; k++) {
        auto n = number(v[k], key);
        if (!n) return n.error();
        out[k] = static_cast<std::remove_reference_t<decltype(out[0])>>(*n);
      }
      seen++;
      return {};
    };
    auto cap = [&](uint64_t& out) -> Status {
      if (v.size() != 1) return make_error(ErrorKind::corrupt, "bad " + key + " line in a process's status");
      auto n = number(v[0], key, 16);
      if (!n) return n.error();
      out = *n;
      seen++;
      return {};
    };
    Status st;
    if (key == "Uid") st = ids(p.uid);
    else if (key == "Gid") st = ids(p.gid);
    else if (key == "CapInh") st = cap(p.cap_inh);
    else if (key == "CapPrm") st = cap(p.cap_prm);
    else if (key == "CapEff") st = cap(p.cap_eff);
    else if (key == "CapAmb") st = cap(p.cap_amb);
    else if (key == "Groups") {
      for (const auto& g : v) {
        auto n = number(g, "group");
        if (!n) return n.error();
        p.groups.push_back(static_cast<gid_t>(*n));
      }
    }
    if (!st) return st.error();
  }
  if (seen != 6) return make_error(ErrorKind::corrupt, "a process's status lacks its ids or capabilities");
  return p;
}

std::string privilege_beyond(const ProcessCreds& p, const Identity& who) {
  static const char* kWhich[] = {"real", "effective", "saved", "file-system"};
  for (int k = 0; k < 4; k++) {
    if (p.uid[k] != who.uid) return fmt::format("its {} uid is {}", kWhich[k], p.uid[k]);
    if (p.gid[k] != who.gid) return fmt::format("its {} gid is {}", kWhich[k], p.gid[k]);
  }
  for (gid_t g : p.groups)
    if (g != who.gid && std::find(who.groups.begin(), who.groups.end(), g) == who.groups.end())
      return fmt::format("it is in group {}", g);
  struct {
    const char* name;
    uint64_t set;
  } caps[] = {{"effective", p.cap_eff}, {"permitted", p.cap_prm}, {"inheritable", p.cap_inh}, {"ambient", p.cap_amb}};
  for (const auto& c : caps)
    if (c.set) return fmt::format("it holds capabilities ({} set {:x})", c.name, c.set);
  return "";
}

}  // namespace cryo
