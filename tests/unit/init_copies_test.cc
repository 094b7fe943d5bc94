// remove_unused_inits: which of the node's cryo-init copies go.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "job/launch.h"

namespace fs = std::filesystem;
using cryo::job::remove_unused_inits;

namespace {

class InitCopiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-init-copies-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }
  // A copy last handed out `age` seconds ago.
  std::string copy(const std::string& name, double age) {
    std::string path = dir_ + "/" + name;
    fs::copy_file("/bin/sleep", path);
    timespec t[2];
    ::clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= static_cast<time_t>(age);
    t[1] = t[0];
    EXPECT_EQ(::utimensat(AT_FDCWD, path.c_str(), t, 0), 0);
    return path;
  }

  std::string dir_;
  pid_t child_ = -1;
};

TEST_F(InitCopiesTest, OnlyCopiesIdleForLongAndRunByNoProcessGo) {
  std::string idle = copy("cryo-init-1111", 7200);
  std::string recent = copy("cryo-init-2222", 60);
  std::string running = copy("cryo-init-3333", 7200);
  std::string other = copy("notes", 7200);
  child_ = ::fork();
  if (child_ == 0) {
    ::execl(running.c_str(), "cryo-init", "60", nullptr);
    ::_exit(127);
  }
  // Until the child runs the copy, /proc/<child>/exe is still this test.
  for (int i = 0; i < 500 && fs::read_symlink("/proc/" + std::to_string(child_) + "/exe") != running; i++) ::usleep(10000);
  ASSERT_EQ(fs::read_symlink("/proc/" + std::to_string(child_) + "/exe"), running);

  EXPECT_EQ(remove_unused_inits(dir_, 3600), 1u);
  EXPECT_FALSE(fs::exists(idle));
  EXPECT_TRUE(fs::exists(recent));
  EXPECT_TRUE(fs::exists(running)) << "a running job's init was removed";
  EXPECT_TRUE(fs::exists(other));
}

}  // namespace
