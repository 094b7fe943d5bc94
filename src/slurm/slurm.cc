#include "slurm/slurm.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "base/sys.h"

namespace cryo::slurm {

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Quotes a word for bash.
std::string quote(const std::string& w) {
  bool plain = !w.empty();
  for (char c : w)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("-_./=:,@%+").find(c) == std::string_view::npos)
      plain = false;
  if (plain) return w;
  std::string q = "'";
  for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

Result<double> end_time(const std::string& job_id) {
  auto out = sys::run_command({"squeue", "-h", "-j", job_id, "-o", "%l %e"});
  if (!out) return out.error();
  // "%l" is the limit: UNLIMITED (or a partition's INFINITE) has no end.
  std::string text = trim(*out);
  auto space = text.find(' ');
  if (space == std::string::npos || text.compare(0, space, "UNLIMITED") == 0 || text.compare(0, space, "INVALID") == 0)
    return 0.0;
  text = text.substr(space + 1);
  struct tm tm {};
  if (const char* rest = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm); !rest || *rest) return 0.0;
  tm.tm_isdst = -1;
  return static_cast<double>(::mktime(&tm));
}

Result<uint32_t> job_owner(const std::string& job_id) {
  if (job_id.empty() || job_id.find_first_not_of("0123456789_") != std::string::npos)
    return make_error(ErrorKind::usage, "'" + job_id + "' is not a Slurm job id");
  auto out = sys::run_command({"squeue", "-h", "-j", job_id, "-o", "%U"});
  if (!out) return out.error();
  std::string text = trim(*out);
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    return make_error(ErrorKind::not_found, "Slurm has no job " + job_id);
  return static_cast<uint32_t>(std::stoul(text));
}

Result<Ending> why_terminated(const std::string& job_id) {
  auto out = sys::run_command({"squeue", "-h", "-j", job_id, "-o", "%T %r"});
  if (!out) return out.error();
  std::string text = trim(*out);
  std::string state = text.substr(0, text.find(' '));
  std::string reason = text.find(' ') == std::string::npos ? "" : text.substr(text.find(' ') + 1);
  if (state == "RUNNING") return Ending::preempted;
  // Ending jobs show as COMPLETING; the reason tells a time limit from a cancel.
  if (reason == "TimeLimit" || state == "TIMEOUT") return Ending::time_limit;
  return Ending::cancelled;
}

Status requeue(const std::string& job_id) {
  auto out = sys::run_command({"scontrol", "requeue", job_id});
  if (!out) return out.error();
  return {};
}

namespace {
// Room for the next checkpoint: twice the last one (images grow), plus the requeue.
double needed(double seconds) { return 2 * seconds + 10; }
}  // namespace

bool margin_too_short(double seconds, double margin) { return needed(seconds) > margin; }

int suggested_margin(double seconds) {
  double need = needed(seconds);
  int margin = static_cast<int>(std::ceil(need / 30) * 30);
  return margin < 60 ? 60 : margin;
}

std::string shell_hazard(int sig) {
  pid_t parent = ::getppid();
  auto comm = sys::read_file(fmt::format("/proc/{}/comm", parent));
  std::string name = comm ? trim(*comm) : "?";
  if (name == "slurmstepd") return "";
  return fmt::format(
      "cryo is not the batch script itself but a child of '{}' (pid {}); Slurm's --signal=B:{} goes to that "
      "shell only, which dies of it and ends the job before cryo can checkpoint: start cryo with "
      "'exec cryo run ...' in the batch script (or use 'cryo sbatch')",
      name, parent, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
}

std::string batch_script(const BatchSpec& spec) {
  std::string s = "#!/bin/bash\n";
  s += "# Written by 'cryo sbatch': the job is checkpointed at the warning signal, requeued,\n";
  s += "# and restored in its next allocation until it finishes.  See docs/slurm.md.\n";
  s += fmt::format("#SBATCH --signal=B:{}@{}\n", spec.signal, spec.margin);
  s += "#SBATCH --requeue\n#SBATCH --open-mode=append\n";
  s += "# exec: Slurm sends the warning signal to the batch script's process only.\n";
  s += "exec " + quote(spec.cryo_path);
  for (const auto& a : spec.cryo_global_args) s += " " + quote(a);
  s += " run --checkpoint-on " + spec.signal;
  for (const auto& a : spec.cryo_args) s += " " + quote(a);
  s += " --";
  for (const auto& a : spec.command) s += " " + quote(a);
  return s + "\n";
}

}  // namespace cryo::slurm
