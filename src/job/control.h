// The control socket of a running job (<job dir>/control.sock), speaking
// proto/control.proto over SOCK_SEQPACKET.  Paths are reached through
// /proc/self/fd/<dirfd>/ so that long store paths fit in sun_path.
#pragma once

#include <functional>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "control.pb.h"

namespace cryo::job {

inline constexpr uint32_t kControlVersion = 1;

Result<UniqueFd> control_listen(const std::string& job_dir);
// Fails with ECONNREFUSED/ENOENT when no supervisor listens.
Result<UniqueFd> control_connect(const std::string& job_dir);

Status send_message(int fd, const google::protobuf::Message& m);
// Receives one message into m.  A closed peer is an error.
Status recv_message(int fd, google::protobuf::Message& m);

// A Failure reply from e, and back: message, hint, errno and kind.
control::Reply failure_reply(const Error& e);
Error failure_error(const control::Failure& f);
// Sends failure_reply(e).
void send_failure(int fd, const Error& e);

}  // namespace cryo::job
