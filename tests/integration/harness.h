// Drives the cryo binary the way a user does, and cleans up every process
// it started, by PID.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace cryo::test {

class CryoTest : public ::testing::Test {
 public:
  void SetUp() override;
  void TearDown() override;

  // Runs cryo to completion; returns its exit status.  out gets stdout, err stderr.
  int cryo(const std::vector<std::string>& args, std::string* out = nullptr, std::string* err = nullptr,
           const std::map<std::string, std::string>& env = {});
  // Starts cryo in the background (run or restore); its stderr goes to
  // work_/spawn-N.err, N counting the spawns from 0.
  pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {});
  // Waits for a spawned cryo; returns its exit status, or -1 on timeout.
  int wait_exit(pid_t pid, double timeout = 60);

  std::string prog(const std::string& name) const { return std::string(CRYO_PROGS) + "/" + name; }
  std::string go_file(const std::string& job) const { return work_ + "/go-" + job; }
  void go(const std::string& job);
  std::string log(const std::string& job) const;
  // Waits until the job's stdout holds `text` `times` times.
  bool wait_for(const std::string& job, const std::string& text, double timeout = 30, int times = 1);
  int count(const std::string& job, const std::string& text) const;
  // The largest N of lines "<word> N" in the job's stdout.
  long last(const std::string& job, const std::string& word) const;
  // Checks "<word> 1" .. "<word> N" appear each exactly once, in order.
  void expect_sequence(const std::string& job, const std::string& word) const;
  // Runs tests/progs/counter as job until "tick 5", then takes checkpoint
  // 0001 with --stop; true once its supervisor has exited with 75.
  bool stopped_counter(const std::string& job);
  // Runs tests/progs/resultfile as job, writing `result`, takes checkpoint
  // 0001 while it runs, lets it write 20 more lines and kills it (SIGKILL).
  // Returns the last line it had written at the checkpoint, or -1.
  long wrote_past_checkpoint(const std::string& job, const std::string& result);
  // Restores a job that prints "tick N" (or `word` N; with extra
  // arguments), waits until it has ticked `more` times past its log's last
  // tick, lets it end, and checks that it went on: exit status 0, PASS
  // once, every tick once and in order.  Returns the job's event log.
  std::string restore_ticking(const std::string& job, long more, const std::vector<std::string>& extra = {},
                              const std::string& word = "tick", const std::map<std::string, std::string>& env = {});
  nlohmann::json status(const std::string& job);
  pid_t job_pid(const std::string& job);
  // How many checkpoints of the job the test's fast tier holds.
  int fast_copies(const std::string& job) const;
  // Takes a checkpoint (with --wait: it is durable on return) and expects
  // success; returns its id.
  std::string checkpoint(const std::string& job, const std::vector<std::string>& extra = {});

  // A fresh tmpfs, unmounted by TearDown (after the jobs on it are gone).
  std::string mount_tmpfs(const std::string& options, unsigned long flags = 0);

  std::string store_, work_;
  std::string fast_;  // the fast tier (CRYO_FAST_TIER) of this test's commands
  std::vector<std::string> mounts_;
  std::vector<pid_t> spawned_;  // not yet waited for
  int spawns_ = 0;              // names each spawn's stderr file: spawn-N.err
  std::vector<std::string> jobs_;
};

bool read_text(const std::string& path, std::string* out);
// Damages a file: flips the low bit of its byte at offset `at`.
void flip_byte(const std::string& path, long at);
// In a forked child: executes the cryo under test with args.
[[noreturn]] void exec_cryo(const std::vector<std::string>& args);
// Waits until the file holds `text` `times` times.
bool wait_for_text(const std::string& file, const std::string& text, double timeout, int times = 1);
// Runs a shell command line; returns its stdout (and its exit status in *rc).
std::string sh(const std::string& cmd, int* rc = nullptr);

}  // namespace cryo::test
