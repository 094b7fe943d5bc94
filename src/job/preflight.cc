#include "job/preflight.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "job/files.h"
#include "job/mounts.h"
#include "store/staging.h"

namespace cryo::job {

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::pass: return "pass";
    case Verdict::warn: return "warn";
    case Verdict::fail: return "fail";
  }
  return "?";
}

nlohmann::json to_json(const Check& c) {
  nlohmann::json j = {{"check", c.name}, {"result", verdict_name(c.verdict)}, {"detail", c.detail}};
  if (!c.fix.empty()) j["fix"] = c.fix;
  return j;
}

namespace {

// x86 instruction sets code may test for (and glibc's ifuncs do); any
// "avx512*" and "amx*" too.  Arm's "Features" are all instruction sets.
const std::set<std::string> kX86Isa = {
    "3dnowprefetch", "abm",   "adx",        "aes",     "avx",        "avx2",      "avx_vnni", "avx_vnni_int8",
    "avx_ifma",      "avx_ne_convert",      "bmi1",    "bmi2",       "clflushopt", "clwb",     "cmov",
    "cx16",          "cx8",   "erms",       "f16c",    "fma",        "fma4",      "fsrm",     "fxsr",
    "gfni",          "hle",   "lahf_lm",    "mmx",     "movbe",      "movdir64b", "movdiri",  "pclmulqdq",
    "pku",           "pni",   "popcnt",     "rdrand",  "rdseed",     "rtm",       "serialize", "sha_ni",
    "sse",           "sse2",  "sse4_1",     "sse4_2",  "sse4a",      "ssse3",     "tbm",      "vaes",
    "vpclmulqdq",    "waitpkg", "xop",      "xsave",   "xsavec",     "xsaveopt",  "xsaves"};

std::string joined(const std::vector<std::string>& items, size_t most) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < most; i++) out += (i ? ", " : "") + items[i];
  if (items.size() > most) out += fmt::format(" and {} more", items.size() - most);
  return out;
}

// "6.18.0-1-amd64" -> {6, 18, 0}
std::vector<int> version_numbers(const std::string& text) {
  std::vector<int> v;
  int n = 0;
  bool in = false;
  for (char ch : text) {
    if (ch >= '0' && ch <= '9') {
      n = n * 10 + (ch - '0');
      in = true;
    } else if (in) {
      v.push_back(n);
      n = 0;
      in = false;
      if (ch != '.' || v.size() == 3) break;
    } else {
      break;
    }
  }
  if (in && v.size() < 3) v.push_back(n);
  return v;
}

Check cpu_check(const RestoreRecord& r, const Node& node) {
  Check c;
  c.name = "cpu";
  if (r.cpu_flags.empty()) {
    c.detail = "not recorded in this checkpoint";
    return c;
  }
  std::vector<std::string> missing;
  for (const auto& f : r.cpu_flags)
    if (!node.cpu_flags.count(f)) missing.push_back(f);
  if (missing.empty()) {
    c.detail = fmt::format("this CPU has the {} instruction sets of the one the job started on", r.cpu_flags.size());
    return c;
  }
  c.verdict = Verdict::fail;
  c.detail = "this CPU lacks " + joined(missing, 8) + ", which the CPU the job started on had";
  c.fix = "restore on a node whose CPU has them: the job's code may use them (it chose when it started)";
  return c;
}

Check kernel_check(const store::Manifest& m, const Node& node) {
  Check c;
  c.name = "kernel";
  c.detail = "Linux " + node.kernel + " (the checkpoint was taken on " + (m.kernel.empty() ? "?" : m.kernel) + ")";
  if (!m.kernel.empty() && version_numbers(node.kernel) < version_numbers(m.kernel)) {
    c.verdict = Verdict::warn;
    c.detail = "Linux " + node.kernel + " is older than " + m.kernel + ", on which the checkpoint was taken";
    c.fix = "if CRIU refuses the restore, restore on a node with Linux " + m.kernel + " or newer";
  }
  return c;
}

}  // namespace

Check criu_check(const store::Manifest& m, const Result<criu::Version>& criu) {
  Check c;
  c.name = "criu";
  c.kind = ErrorKind::criu;
  if (!criu) {
    c.verdict = Verdict::fail;
    c.detail = criu.error().message;
    c.fix = criu.error().hint;
    return c;
  }
  c.detail = "CRIU " + criu->text() + " (the checkpoint's: " + (m.criu_version.empty() ? "?" : m.criu_version) + ")";
  auto took = version_numbers(m.criu_version);
  if (took.size() == 3 && criu->code() < took[0] * 10000 + took[1] * 100 + took[2]) {
    c.verdict = Verdict::fail;
    c.detail = "CRIU " + criu->text() + " is older than CRIU " + m.criu_version + ", which took the checkpoint";
    c.fix = "install CRIU " + m.criu_version + " or newer here (scripts/install-criu.sh), or restore on a node that has it";
  }
  return c;
}

namespace {

Check files_check(const RestoreRecord& r, const Node& node) {
  Check c;
  c.name = "files";
  std::vector<std::string> problems;
  for (const auto& f : r.needed) {
    auto st = node.stat(f.path);
    if (!st) {
      problems.push_back(f.path + " is missing");
    } else if (f.dir != S_ISDIR(st->st_mode) || (!f.dir && !S_ISREG(st->st_mode))) {
      problems.push_back(f.path + " is no longer a " + (f.dir ? "directory" : "file"));
    } else if (!f.dir && static_cast<uint64_t>(st->st_size) != f.size) {
      problems.push_back(fmt::format("{} has {} bytes, not {}", f.path, st->st_size, f.size));
    } else if (!f.build_id.empty() && node.build_id(f.path) != f.build_id) {
      problems.push_back(f.path + " is another build");
    } else if (!node.readable(f.path)) {
      problems.push_back(f.path + " is not readable");
    }
  }
  if (problems.empty()) {
    c.detail = fmt::format("the {} files and directories the job had open or mapped are as they were", r.needed.size());
    return c;
  }
  c.verdict = Verdict::fail;
  c.detail = fmt::format("{} of the {} files the job had open or mapped differ: {}", problems.size(), r.needed.size(),
                         joined(problems, 5));
  c.fix = "put them back as they were at the checkpoint (a library upgraded since, or a file removed, does "
          "this), or restore on a node that has them";
  return c;
}

Check mounts_check(const RestoreRecord& r, const Node& node) {
  Check c;
  c.name = "mounts";
  std::vector<std::string> missing;
  for (const auto& p : *r.mounts)
    if (!node.stat(p)) missing.push_back(p);
  if (missing.empty()) {
    c.detail = fmt::format("the {} mount points of this node the job had are here", r.mounts->size());
    return c;
  }
  c.verdict = Verdict::fail;
  c.detail = "the job had " + joined(missing, 5) + " mounted from its node; this node has no such path";
  c.fix = "mount them here as on the node that took the checkpoint, or restore on such a node";
  return c;
}

Check memory_check(const store::Manifest& m, const Node& node) {
  Check c;
  c.name = "memory";
  uint64_t pages = 0;
  std::string prefix = std::string(store::kImagesDir) + "/pages-";
  for (const auto& f : m.files)
    if (f.path.rfind(prefix, 0) == 0) pages += f.size;
  c.detail = fmt::format("the job's memory is {}; {} is available", format_bytes(static_cast<double>(pages)),
                         format_bytes(static_cast<double>(node.mem_available)));
  if (node.mem_available < pages) {
    c.verdict = Verdict::fail;
    c.fix = "free memory on this node, or restore on a node with more";
  }
  return c;
}

}  // namespace

std::vector<std::string> cpu_flags(const std::string& cpuinfo) {
  std::istringstream lines(cpuinfo);
  std::string line;
  std::set<std::string> out;
  while (std::getline(lines, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, line.find_first_of(" \t"));
    bool x86 = key == "flags", arm = key == "Features";
    if (!x86 && !arm) continue;
    std::istringstream words(line.substr(colon + 1));
    std::string w;
    while (words >> w)
      if (arm || kX86Isa.count(w) || w.rfind("avx512", 0) == 0 || w.rfind("amx", 0) == 0) out.insert(w);
    break;  // every CPU of a node lists the same
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> cpu_flags_here() {
  auto text = sys::read_file("/proc/cpuinfo");
  return text ? cpu_flags(*text) : std::vector<std::string>{};
}

Node this_node() {
  Node n;
  auto flags = cpu_flags_here();
  n.cpu_flags = {flags.begin(), flags.end()};
  n.kernel = sys::kernel_release();
  n.mem_available = sys::mem_available();
  n.stat = [](const std::string& p) { return sys::stat(p); };
  n.readable = [](const std::string& p) { return ::access(p.c_str(), R_OK) == 0; };
  n.build_id = elf_build_id;
  n.has_bridge = [](const std::string& name) {
    return name.find('/') == std::string::npos && sys::exists("/sys/class/net/" + name + "/bridge");
  };
  return n;
}

std::vector<Check> check_restore(const store::Manifest& m, const RestoreRecord& r, const Node& node) {
  std::vector<Check> out;
  bool engine = r.container.has_value();  // Podman or Docker restores it, with their own checks
  if (!engine) out.push_back(cpu_check(r, node));
  out.push_back(kernel_check(m, node));
  if (node.criu) out.push_back(criu_check(m, *node.criu));
  if (!engine) out.push_back(files_check(r, node));
  if (r.mounts) out.push_back(mounts_check(r, node));
  out.push_back(memory_check(m, node));
  return out;
}

Check network_check(const std::string& bridge, const std::string& address, const Node& node) {
  Check c;
  c.name = "network";
  if (node.has_bridge(bridge)) {
    c.detail = "the parts' bridge " + bridge + " is here, for the part's address " + address;
    return c;
  }
  c.verdict = Verdict::fail;
  c.detail = "this node has no bridge '" + bridge + "', which joins the job's parts (the part's address: " + address + ")";
  c.fix = "create the bridge on every node that runs parts (docs/mpi.md), or restore the part on such a node";
  return c;
}

Status first_failure(const std::vector<Check>& checks) {
  for (const auto& c : checks)
    if (c.verdict == Verdict::fail) return make_error(c.kind, c.detail).with_hint(c.fix);
  return {};
}

}  // namespace cryo::job
