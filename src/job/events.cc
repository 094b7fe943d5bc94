#include "job/events.h"

#include <fcntl.h>

#include "base/sys.h"

namespace cryo::job {

void event(const store::JobDir& dir, const std::string& line, bool quiet) {
  std::string text = sys::iso_time(sys::now()) + " " + line + "\n";
  if (auto fd = sys::open(dir.file(store::JobFile::events), O_WRONLY | O_CREAT | O_APPEND, 0600))
    (void)sys::write_all(fd->get(), text, "cryo.log");
  if (!quiet) {
    std::string out = "cryo: " + line + "\n";
    (void)sys::write_all(2, out, "stderr");
  }
}

std::string failed_line(const Error& e, const store::JobDir* latest_of) {
  std::string line = "checkpoint failed: " + e.message + (e.hint.empty() ? "" : " (" + e.hint + ")") + "; " + kUnharmed;
  if (!latest_of) return line;
  auto latest = latest_of->latest_id();
  return line + (latest && !latest->empty() ? " (checkpoint " + *latest + " stays the latest)"
                                            : " (there is no earlier checkpoint)");
}

void retention_event(const store::JobDir& dir, int keep, const std::vector<std::string>& removed, bool quiet) {
  if (removed.empty()) return;
  std::string ids;
  for (const auto& id : removed) ids += " " + id;
  event(dir, "retention (--keep " + std::to_string(keep) + ") removed" + ids, quiet);
}

}  // namespace cryo::job
