#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "coord/agent.h"
#include "criu/client.h"
#include "job/checkpoint.h"
#include "job/supervisor.h"

namespace cryo::cli {

int g_exit_code = 0;
bool g_json_errors = false;

void print_error(const Error& e) {
  std::string s = "cryo: error: " + e.message + "\n";
  if (!e.hint.empty()) s += "cryo: hint: " + e.hint + "\n";
  std::fputs(s.c_str(), stderr);
}

nlohmann::json error_json(const Error& e) {
  nlohmann::json j = {{"error", e.message}, {"kind", kind_name(kind_of(e))}};
  if (!e.hint.empty()) j["hint"] = e.hint;
  return j;
}

int fail(const Error& e) {
  print_error(e);
  if (g_json_errors) print_json(error_json(e));
  return exit_status(kind_of(e));
}

int exit_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::config: return kExitConfig;
    case ErrorKind::exec: return kExitExec;
    default: return kExitError;
  }
}

void recover_with_progress(const Globals& g, const store::JobDir& dir) {
  Progress progress;
  app::recover(g, dir, progress.fn());
}

void print_json(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

Progress::Progress() : tty_(::isatty(STDERR_FILENO)) {}

void Progress::update(const std::string& phase, uint64_t done, uint64_t total) {
  if (!tty_) return;
  double now = sys::now();
  if (now - last_ < 0.1 && done < total) return;
  last_ = now;
  std::string line = total > 0 ? fmt::format("  {:<13} {:>10} / {:<10} {:3.0f}%", phase, format_bytes(static_cast<double>(done)),
                                             format_bytes(static_cast<double>(total)), 100.0 * static_cast<double>(std::min(done, total)) / static_cast<double>(total))
                               : fmt::format("  {:<13} {:>10}", phase, format_bytes(static_cast<double>(done)));
  std::fprintf(stderr, "\r%-60s", line.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void Progress::finish() {
  if (shown_) std::fprintf(stderr, "\r%-60s\r", "");
  shown_ = false;
}

}  // namespace cryo::cli
