#include "container/log.h"

#include <fcntl.h>

#include <nlohmann/json.hpp>

#include "base/sys.h"

namespace cryo::container {

bool parse_log_line(LogFormat f, const std::string& line, LogEntry* out) {
  if (f == LogFormat::k8s_file) {
    // TIME STREAM TAG TEXT
    auto a = line.find(' ');
    if (a == std::string::npos) return false;
    auto b = line.find(' ', a + 1);
    if (b == std::string::npos) return false;
    auto c = line.find(' ', b + 1);
    std::string stream = line.substr(a + 1, b - a - 1);
    std::string tag = line.substr(b + 1, c == std::string::npos ? std::string::npos : c - b - 1);
    out->stderr = stream == "stderr";
    out->text = c == std::string::npos ? "" : line.substr(c + 1);
    if (tag.find('F') != std::string::npos) out->text += '\n';
    return stream == "stdout" || stream == "stderr";
  }
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object() || !j.contains("log")) return false;
  out->stderr = j.value("stream", "") == "stderr";
  out->text = j["log"].get<std::string>();
  return true;
}

Result<std::vector<LogEntry>> LogReader::read() {
  std::vector<LogEntry> out;
  auto fd = sys::open(path_, O_RDONLY);
  if (!fd) {
    if (fd.error().code == ENOENT) return out;  // not created yet
    return fd.error();
  }
  auto st = sys::fstat(fd->get(), "'" + path_ + "'");
  if (!st) return st.error();
  uint64_t size = static_cast<uint64_t>(st->st_size);
  if (size <= offset_) return out;
  std::string buf(size - offset_, '\0');
  CRYO_TRY(sys::pread_exact(fd->get(), buf.data(), buf.size(), offset_, "'" + path_ + "'"));
  size_t start = 0;
  for (size_t nl = buf.find('\n'); nl != std::string::npos; nl = buf.find('\n', start)) {
    LogEntry e;
    e.end = offset_ + nl + 1;
    if (parse_log_line(format_, buf.substr(start, nl - start), &e)) out.push_back(std::move(e));
    start = nl + 1;
  }
  offset_ += start;
  return out;
}

Result<StreamSizes> stream_sizes(const std::string& path, LogFormat f, uint64_t offset) {
  auto text = sys::read_file(path);
  if (!text) return text.error();
  if (text->size() < offset) return make_error("the container's log '" + path + "' is shorter than its checkpoint says");
  StreamSizes s;
  size_t start = 0;
  for (size_t nl = text->find('\n'); nl != std::string::npos && nl < offset; nl = text->find('\n', start)) {
    LogEntry e;
    if (parse_log_line(f, text->substr(start, nl - start), &e)) (e.stderr ? s.err : s.out) += e.text.size();
    start = nl + 1;
  }
  return s;
}

}  // namespace cryo::container
