#include <gtest/gtest.h>

#include "criu/client.h"

namespace cryo::criu {

TEST(CriuLog, LastErrorsSkipsTheHarmlessRlimitLine) {
  std::string log =
      "(00.01) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n"
      "(00.02) Warn  something\n"
      "(00.03) Error (criu/sockets.c:628): sockets: Can't get 1:16 opt: Operation not supported\n";
  EXPECT_EQ(last_errors(log), "sockets: Can't get 1:16 opt: Operation not supported");
}

TEST(CriuLog, HintsForKnownCauses) {
  EXPECT_NE(hint_for_log("write: No space left on device").find("full"), std::string::npos);
  EXPECT_NE(hint_for_log("Can't get 1:16 opt: Operation not supported").find("4.2"), std::string::npos);
  EXPECT_EQ(hint_for_log("all fine"), "");
}

TEST(CriuProbe, MissingBinaryGivesTheExactFix) {
  auto v = probe("/nonexistent/criu");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().hint.find("install-criu.sh"), std::string::npos);
}

}  // namespace cryo::criu
