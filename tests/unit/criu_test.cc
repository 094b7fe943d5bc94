#include <gtest/gtest.h>

#include "criu/client.h"

namespace cryo::criu {

TEST(CriuLog, TheFirstRealErrorIsTheCause) {
  std::string log =
      "(00.01) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n"
      "(00.02) Warn  something\n"
      "(00.03) Error (criu/shmem.c:863): SysVIPC shmem map 7f00 doesn't live in IPC ns\n"
      "(00.04) Error (criu/cr-dump.c:1630): Dump mappings (pid: 5) failed with -1\n"
      "(00.05) Error (criu/cr-dump.c:2090): Dumping FAILED.\n";
  EXPECT_EQ(first_error(log), "SysVIPC shmem map 7f00 doesn't live in IPC ns");
  EXPECT_EQ(first_error("(00.01) Warn  nothing wrong\n"), "");
}

TEST(CriuLog, HintsForKnownCauses) {
  auto hint = [](const std::string& error) { return hint_for_log("(00.01) Error (criu/x.c:1): " + error + "\n"); };
  EXPECT_NE(hint("write: No space left on device").find("full"), std::string::npos);
  EXPECT_NE(hint("Can't get 1:16 opt: Operation not supported").find("4.2"), std::string::npos);
  EXPECT_NE(hint("SysVIPC shmem map 7f00 doesn't live in IPC ns").find("--ipc host"), std::string::npos);
  EXPECT_NE(hint("Can't dump ghost file /dev/shm/x of 5000000000 size, increase limit").find("4 GiB"), std::string::npos);
  EXPECT_NE(hint("Can't lookup mount=24 for fd=10 path=/dev/null").find("outside its mount namespace"),
            std::string::npos);
  EXPECT_NE(hint("File /usr/lib/libx.so has bad build-ID").find("--dry-run"), std::string::npos);
  EXPECT_EQ(hint_for_log("all fine"), "");
  // Only CRIU's errors count: its ordinary lines name sockets and files too.
  EXPECT_EQ(hint_for_log("(00.01) Dumping unix socket 5\n(00.02) Error (criu/x.c:1): something else\n"), "");
}

TEST(CriuProbe, MissingBinaryGivesTheExactFix) {
  auto v = probe("/nonexistent/criu");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().hint.find("install-criu.sh"), std::string::npos);
}

}  // namespace cryo::criu
