#include "job/output.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/sys.h"

namespace cryo::job {

Result<Output> open_output(const store::JobDir& dir, const std::string& name, UniqueFd pipe, int tee) {
  Output o;
  o.name = name;
  auto log = sys::open(dir.output_log(name), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (!log) return log.error();
  o.log = std::move(*log);
  int fl = ::fcntl(pipe.get(), F_GETFL);
  ::fcntl(pipe.get(), F_SETFL, fl | O_NONBLOCK);
  o.pipe = std::move(pipe);
  o.tee = tee;
  return o;
}

Status drain(Output& o) {
  char buf[65536];
  while (!o.eof) {
    ssize_t n = ::read(o.pipe.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return sys_error("cannot read the job's " + o.name);
    }
    if (n == 0) {
      o.eof = true;
      break;
    }
    std::string_view data(buf, static_cast<size_t>(n));
    CRYO_TRY(sys::write_all(o.log.get(), data, "the job's " + o.name + " log"));
    if (o.tee >= 0) (void)sys::write_all(o.tee, data, o.name);
  }
  return {};
}

Result<std::string> pipe_key(const Output& o) {
  auto st = sys::fstat(o.pipe.get(), "the job's " + o.name + " pipe");
  if (!st) return st.error();
  return "pipe:[" + std::to_string(st->st_ino) + "]";
}

}  // namespace cryo::job
