// Container engines' log files, as cryo reads them to give a container
// job the same stdout.log and stderr.log as any job:
//   Podman (conmon, k8s-file):  "2026-11-25T21:24:29.881472467+00:00 stdout F tick 1"
//                               (F: a full line, P: part of one)
//   Docker (json-file):         {"log":"tick 1\n","stream":"stdout","time":"..."}
// A LogReader takes the complete lines that have been appended since the
// last call; a partial last line waits for the next.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace cryo::container {

enum class LogFormat { k8s_file, json_file };

struct LogEntry {
  bool stderr = false;
  std::string text;  // what the container wrote (a full line ends in '\n')
  uint64_t end = 0;  // the log's offset just after this entry's line
};

// Parses one line of the log (without its '\n').  Unknown lines are skipped.
bool parse_log_line(LogFormat f, const std::string& line, LogEntry* out);

class LogReader {
 public:
  LogReader(std::string path, LogFormat f, uint64_t offset) : path_(std::move(path)), format_(f), offset_(offset) {}
  // The entries of the lines completed since the last call.
  Result<std::vector<LogEntry>> read();
  uint64_t offset() const { return offset_; }
  // Reads from offset next time (to give back entries beyond a cut).
  void rewind(uint64_t offset) { offset_ = offset; }

 private:
  std::string path_;
  LogFormat format_;
  uint64_t offset_;
};

// The bytes of stdout and of stderr that the first `offset` bytes of a log
// hold: what a job's stdout.log and stderr.log hold at that point.
struct StreamSizes {
  uint64_t out = 0, err = 0;
};
Result<StreamSizes> stream_sizes(const std::string& path, LogFormat f, uint64_t offset);

}  // namespace cryo::container
