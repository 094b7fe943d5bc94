#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "criu/client.h"

namespace cryo::cli {

int g_exit_code = 0;

std::string Globals::store_root() const { return store.empty() ? store::default_root() : store; }
std::string Globals::criu_path() const { return criu.empty() ? criu::default_path() : criu; }

int fail(const Error& e) {
  std::string s = "cryo: error: " + e.message + "\n";
  if (!e.hint.empty()) s += "cryo: hint: " + e.hint + "\n";
  std::fputs(s.c_str(), stderr);
  return 1;
}

Result<store::JobDir> open_job(const Globals& g, const std::string& name) {
  CRYO_TRY(store::validate_job_name(name));
  store::JobDir dir(g.store_root(), name);
  CRYO_TRY(dir.check_access());
  return dir;
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
