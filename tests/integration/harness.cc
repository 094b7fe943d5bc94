#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <thread>

namespace cryo::test {

namespace fs = std::filesystem;

bool read_text(const std::string& path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

void flip_byte(const std::string& path, long at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c = static_cast<char>(f.get());
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x01));
}

std::string sh(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  if (rc) *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

void exec_cryo(const std::vector<std::string>& args) {
  std::vector<char*> argv{const_cast<char*>(CRYO_BIN)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(CRYO_BIN, argv.data());
  ::_exit(127);
}

bool wait_for_text(const std::string& file, const std::string& text, double timeout, int times) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (std::chrono::steady_clock::now() < end) {
    std::string l;
    read_text(file, &l);
    int n = 0;
    for (size_t p = l.find(text); p != std::string::npos; p = l.find(text, p + 1)) n++;
    if (n >= times) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

void CryoTest::SetUp() {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (CRIU dumps and restores processes)";
  char t1[] = "/tmp/cryo-it-store-XXXXXX", t2[] = "/tmp/cryo-it-work-XXXXXX";
  store_ = ::mkdtemp(t1);
  work_ = ::mkdtemp(t2);
  char t3[] = "/dev/shm/cryo-it-fast-XXXXXX";
  fast_ = ::mkdtemp(t3);
}

void CryoTest::TearDown() {
  if (store_.empty()) return;
  // Jobs first (by the PIDs their supervisors recorded), then supervisors.
  for (const auto& j : jobs_) {
    std::string text;
    if (!read_text(store_ + "/" + j + "/state.json", &text)) continue;
    auto s = nlohmann::json::parse(text, nullptr, false);
    if (s.is_object() && s.value("job_pid", 0) > 0) ::kill(s.value("job_pid", 0), SIGKILL);
  }
  for (pid_t p : spawned_) {
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
  for (const auto& m : mounts_) {
    ::umount2(m.c_str(), MNT_DETACH);
    fs::remove(m);
  }
  fs::remove_all(store_);
  fs::remove_all(work_);
  fs::remove_all(fast_);
}

std::string CryoTest::mount_tmpfs(const std::string& options, unsigned long flags) {
  char t[] = "/tmp/cryo-it-mnt-XXXXXX";
  std::string dir = ::mkdtemp(t);
  EXPECT_EQ(::mount("tmpfs", dir.c_str(), "tmpfs", flags, options.c_str()), 0) << dir;
  mounts_.push_back(dir);
  return dir;
}

namespace {
pid_t start(const std::vector<std::string>& args, const std::string& store, const std::string& fast,
            const std::map<std::string, std::string>& env, int out_fd, int err_fd) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (out_fd >= 0) ::dup2(out_fd, 1);
    if (err_fd >= 0) ::dup2(err_fd, 2);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::setenv("CRYO_STORE", store.c_str(), 1);
    ::setenv("CRYO_FAST_TIER", fast.c_str(), 1);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    exec_cryo(args);
  }
  return pid;
}
}  // namespace

int CryoTest::cryo(const std::vector<std::string>& args, std::string* out, std::string* err,
                   const std::map<std::string, std::string>& env) {
  static std::atomic<int> n = 0;
  std::string o = work_ + "/cmd-" + std::to_string(++n) + ".out", e = o + ".err";
  int ofd = ::open(o.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int efd = ::open(e.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid = start(args, store_, fast_, env, ofd, efd);
  ::close(ofd);
  ::close(efd);
  int status;
  ::waitpid(pid, &status, 0);
  std::string so, se;
  read_text(o, &so);
  read_text(e, &se);
  if (out) *out = so;
  if (err) *err = se;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

pid_t CryoTest::spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  std::string e = work_ + "/spawn-" + std::to_string(spawns_++) + ".err";
  int efd = ::open(e.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid = start(args, store_, fast_, env, efd, efd);
  ::close(efd);
  spawned_.push_back(pid);
  for (size_t i = 0; i + 1 < args.size(); i++)
    if (args[i] == "--name") jobs_.push_back(args[i + 1]);
  if (args[0] == "restore") jobs_.push_back(args[1]);
  return pid;
}

int CryoTest::wait_exit(pid_t pid, double timeout) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (std::chrono::steady_clock::now() < end) {
    int status;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      std::erase(spawned_, pid);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

void CryoTest::go(const std::string& job) { std::ofstream(go_file(job)) << "go\n"; }

std::string CryoTest::log(const std::string& job) const {
  std::string s;
  read_text(store_ + "/" + job + "/stdout.log", &s);
  return s;
}

int CryoTest::count(const std::string& job, const std::string& text) const {
  std::string l = log(job);
  int n = 0;
  for (size_t p = l.find(text); p != std::string::npos; p = l.find(text, p + 1)) n++;
  return n;
}

bool CryoTest::wait_for(const std::string& job, const std::string& text, double timeout, int times) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (std::chrono::steady_clock::now() < end) {
    if (count(job, text) >= times) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

long CryoTest::wrote_past_checkpoint(const std::string& job, const std::string& result) {
  pid_t run = spawn({"run", "--name", job, "--", prog("resultfile"), go_file(job), result});
  if (!wait_for(job, "wrote 10")) {
    ADD_FAILURE() << "job " << job << " never wrote line 10";
    return -1;
  }
  std::string id = checkpoint(job);
  EXPECT_EQ(id, "0001");
  long at = last(job, "wrote");
  bool more = wait_for(job, "wrote " + std::to_string(at + 20));
  EXPECT_TRUE(more) << "job " << job << " stopped writing after the checkpoint";
  ::kill(job_pid(job), SIGKILL);
  wait_exit(run);
  return id == "0001" && more ? at : -1;
}

bool CryoTest::stopped_counter(const std::string& job) {
  pid_t run = spawn({"run", "--name", job, "--", prog("counter"), go_file(job)});
  if (!wait_for(job, "tick 5")) {
    ADD_FAILURE() << "job " << job << " never reached tick 5";
    return false;
  }
  std::string id = checkpoint(job, {"--stop"});
  EXPECT_EQ(id, "0001");
  int rc = wait_exit(run);
  EXPECT_EQ(rc, 75);
  return id == "0001" && rc == 75;
}

std::string CryoTest::restore_ticking(const std::string& job, long more, const std::vector<std::string>& extra,
                                      const std::string& word, const std::map<std::string, std::string>& env) {
  long at = last(job, word);
  std::vector<std::string> args{"restore", job};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_t restore = spawn(args, env);
  EXPECT_TRUE(wait_for(job, word + " " + std::to_string(at + more))) << "job " << job << " did not go on after its restore";
  go(job);
  EXPECT_EQ(wait_exit(restore), 0);
  EXPECT_EQ(count(job, "PASS"), 1) << log(job);
  expect_sequence(job, word);
  std::string events;
  read_text(store_ + "/" + job + "/cryo.log", &events);
  return events;
}

long CryoTest::last(const std::string& job, const std::string& word) const {
  std::istringstream ss(log(job));
  std::string line;
  long best = 0;
  while (std::getline(ss, line))
    if (line.rfind(word + " ", 0) == 0) best = std::max(best, std::atol(line.c_str() + word.size() + 1));
  return best;
}

void CryoTest::expect_sequence(const std::string& job, const std::string& word) const {
  std::istringstream ss(log(job));
  std::string line;
  long expect = 1;
  while (std::getline(ss, line)) {
    if (line.rfind(word + " ", 0) != 0) continue;
    long v = std::atol(line.c_str() + word.size() + 1);
    ASSERT_EQ(v, expect) << "output of job " << job << " is not " << word << " 1..N exactly once";
    expect++;
  }
  EXPECT_GT(expect, 1) << "no '" << word << "' lines";
}

nlohmann::json CryoTest::status(const std::string& job) {
  std::string out;
  EXPECT_EQ(cryo({"status", job, "--json"}, &out), 0);
  return nlohmann::json::parse(out, nullptr, false);
}

int CryoTest::fast_copies(const std::string& job) const {
  int n = 0;
  for (const auto& d : fs::directory_iterator(fast_))
    if (d.path().filename().string().rfind(job + "-", 0) == 0)
      for (const auto& c : fs::directory_iterator(d.path()))
        n += c.path().filename().string().find_first_not_of("0123456789") == std::string::npos;
  return n;
}

pid_t CryoTest::job_pid(const std::string& job) {
  pid_t pid = status(job).value("job_pid", 0);
  if (pid > 0) return pid;
  // kill(0) or kill(-1) would end the test run itself: fail instead, with
  // a pid no process has.
  ADD_FAILURE() << "job " << job << " reports no job pid";
  return std::numeric_limits<pid_t>::max();
}

std::string CryoTest::checkpoint(const std::string& job, const std::vector<std::string>& extra) {
  std::vector<std::string> args{"checkpoint", job, "--json", "--wait"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::string out, err;
  int rc = cryo(args, &out, &err);
  EXPECT_EQ(rc, 0) << err;
  auto j = nlohmann::json::parse(out, nullptr, false);
  return j.is_object() ? j.value("id", "") : "";
}

}  // namespace cryo::test
