// Jobs of ordinary users, through cryo's service (src/service/): as alice
// and bob, users this test makes (and removes if it made them), with a
// cryod it starts for itself and stops, by PID.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "containers.h"
#include "harness.h"
#include "slurm_cluster.h"

namespace cryo::test {
namespace {

namespace fs = std::filesystem;

struct User {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

class UsersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (it makes users and starts cryo's service)";
    for (const char* name : {"alice", "bob"}) {
      if (!::getpwnam(name)) {
        int rc = 0;
        sh(std::string("useradd -m -s /bin/sh ") + name + " 2>&1", &rc);
        ASSERT_EQ(rc, 0) << "cannot make user " << name;
        made_users_.push_back(name);
      }
      passwd* pw = ::getpwnam(name);
      ASSERT_NE(pw, nullptr);
      users_[name] = {name, pw->pw_uid, pw->pw_gid, pw->pw_dir};
    }
    char t[] = "/tmp/cryo-users-XXXXXX";
    dir_ = ::mkdtemp(t);
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    // Every user's store below one directory, as /shared/cryo/{user} on a site.
    fs::create_directory(dir_ + "/store");
    fs::permissions(dir_ + "/store", fs::perms::all | fs::perms::sticky_bit);
    char f[] = "/dev/shm/cryo-users-fast-XXXXXX";
    fast_ = ::mkdtemp(f);
    fs::permissions(fast_, fs::perms::all | fs::perms::sticky_bit);
    socket_ = dir_ + "/cryod.sock";
    conf_ = dir_ + "/cryo.conf";
    std::ofstream(conf_) << "[store]\npath = \"" << dir_ << "/store/{user}\"\n[fast_tier]\npath = \"" << fast_
                         << "\"\n[service]\nsocket = \"" << socket_ << "\"\n";
    before_service();
    start_service();
  }
  // What a fixture brings up before the service (a Slurm cluster).
  virtual void before_service() {}

  void TearDown() override {
    if (dir_.empty()) return;
    // The jobs (by the PIDs their supervisors recorded), the clients, the service.
    for (const auto& [user, job] : jobs_) {
      std::string text;
      if (!read_text(store(user) + "/" + job + "/state.json", &text)) continue;
      auto s = nlohmann::json::parse(text, nullptr, false);
      if (!s.is_object()) continue;
      for (const char* k : {"job_pid", "supervisor_pid"})
        if (s.value(k, 0) > 0) ::kill(s.value(k, 0), SIGKILL);
    }
    for (pid_t p : spawned_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    if (cryod_ > 0) {
      ::kill(cryod_, SIGTERM);
      ::waitpid(cryod_, nullptr, 0);
    }
    fs::remove_all(dir_);
    fs::remove_all(fast_);
    for (const auto& u : made_users_) sh("userdel -r " + u + " 2>/dev/null");
  }

  void start_service() {
    cryod_ = ::fork();
    if (cryod_ == 0) {
      int log = ::open((dir_ + "/cryod.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(log, 1);
      ::dup2(log, 2);
      // Its own environment, as an init system would give it: nothing
      // another test left in this process's.
      ::clearenv();
      ::setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
      ::setenv("CRYO_CONFIG", conf_.c_str(), 1);
      if (!slurm_conf_.empty()) ::setenv("SLURM_CONF", slurm_conf_.c_str(), 1);
      ::execl(CRYOD_BIN, CRYOD_BIN, nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !fs::exists(socket_); i++) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_TRUE(fs::exists(socket_)) << "cryod did not start: " << service_log();
  }

  std::string service_log() const {
    std::string s;
    read_text(dir_ + "/cryod.log", &s);
    return s;
  }
  std::string store(const std::string& user) const { return dir_ + "/store/" + user; }
  std::string job_log(const std::string& user, const std::string& job) const {
    std::string s;
    read_text(store(user) + "/" + job + "/stdout.log", &s);
    return s;
  }
  std::string go_file(const std::string& job) const { return dir_ + "/go-" + job; }
  std::string counter() const { return std::string(CRYO_PROGS) + "/counter"; }

  // cryo as `u`, in her home, with umask 027, stdout and stderr to files.
  pid_t start_as(const User& u, const std::vector<std::string>& args, const std::string& out_file,
                 const std::string& err_file, const std::map<std::string, std::string>& env) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int o = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
      int e = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
      int null = ::open("/dev/null", O_RDONLY);
      if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0 || ::dup2(null, 0) < 0) ::_exit(98);
      if (::initgroups(u.name.c_str(), u.gid) != 0 || ::setgid(u.gid) != 0 || ::setuid(u.uid) != 0) ::_exit(99);
      if (::chdir(u.home.c_str()) != 0) ::_exit(97);
      ::umask(027);
      rlimit files{512, 512};
      ::setrlimit(RLIMIT_NOFILE, &files);
      ::clearenv();
      ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
      ::setenv("HOME", u.home.c_str(), 1);
      ::setenv("USER", u.name.c_str(), 1);
      ::setenv("CRYO_CONFIG", conf_.c_str(), 1);
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      exec_cryo(args);
    }
    return pid;
  }
  int as(const std::string& user, const std::vector<std::string>& args, std::string* out = nullptr,
         std::string* err = nullptr, const std::map<std::string, std::string>& env = {}) {
    std::string o = dir_ + "/cmd-" + std::to_string(++commands_) + ".out", e = o + ".err";
    pid_t pid = start_as(users_.at(user), args, o, e, env);
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (out) read_text(o, out);
    if (err) read_text(e, err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  pid_t spawn_as(const std::string& user, const std::string& job, const std::vector<std::string>& args) {
    std::string o = dir_ + "/spawn-" + std::to_string(++commands_) + ".out";
    pid_t pid = start_as(users_.at(user), args, o, o + ".err", {});
    spawned_.push_back(pid);
    jobs_.emplace_back(user, job);
    return pid;
  }
  int wait_exit(pid_t pid, double timeout = 60) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    while (std::chrono::steady_clock::now() < end) {
      int st;
      if (::waitpid(pid, &st, WNOHANG) == pid) {
        std::erase(spawned_, pid);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  bool wait_for(const std::string& user, const std::string& job, const std::string& text, double timeout = 30) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    while (std::chrono::steady_clock::now() < end) {
      if (job_log(user, job).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  long last_tick(const std::string& user, const std::string& job) const {
    std::istringstream ss(job_log(user, job));
    long best = 0;
    for (std::string line; std::getline(ss, line);)
      if (line.rfind("tick ", 0) == 0) best = std::max(best, std::atol(line.c_str() + 5));
    return best;
  }
  pid_t job_pid(const std::string& user, const std::string& job) const {
    std::string text;
    read_text(store(user) + "/" + job + "/state.json", &text);
    auto s = nlohmann::json::parse(text, nullptr, false);
    return s.is_object() ? s.value("job_pid", 0) : 0;
  }
  // The job's init once the supervisor has recorded it, other than `old`.
  pid_t wait_job_pid(const std::string& user, const std::string& job, pid_t old = 0, double timeout = 30) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    while (std::chrono::steady_clock::now() < end) {
      pid_t p = job_pid(user, job);
      if (p > 0 && p != old && ::kill(p, 0) == 0) return p;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return 0;
  }
  // A running counter of alice's, named job.
  pid_t alice_counter(const std::string& job) {
    pid_t run = spawn_as("alice", job, {"run", "--name", job, "--", counter(), go_file(job)});
    EXPECT_TRUE(wait_for("alice", job, "tick 5")) << "alice's job " << job << " never ticked: " << service_log();
    return run;
  }

  std::map<std::string, User> users_;
  std::vector<std::string> made_users_;
  std::string dir_, fast_, socket_, conf_;
  std::string slurm_conf_;  // the cluster the service's cryo asks about Slurm jobs
  pid_t cryod_ = -1;
  std::vector<pid_t> spawned_;
  std::vector<std::pair<std::string, std::string>> jobs_;
  int commands_ = 0;
};

// Every id of a process, from /proc/PID/status.
std::string ids_of(pid_t pid) {
  std::string status, out;
  read_text("/proc/" + std::to_string(pid) + "/status", &status);
  std::istringstream ss(status);
  for (std::string line; std::getline(ss, line);)
    if (line.rfind("Uid:", 0) == 0 || line.rfind("Gid:", 0) == 0) out += line + "\n";
  return out;
}

std::string all_four(unsigned id) {
  return std::to_string(id) + "\t" + std::to_string(id) + "\t" + std::to_string(id) + "\t" + std::to_string(id);
}

// Her job runs as her, with her umask, makes files that are hers, keeps
// its store hers alone, and continues from its checkpoint as her.
TEST_F(UsersTest, AUsersJobRunsAsHerAndContinuesFromItsCheckpoint) {
  const User& alice = users_.at("alice");
  pid_t run = spawn_as("alice", "sim", {"run", "--name", "sim", "--", "sh", "-c",
                                        "id -un; umask; echo \"$HOME $USER\"; pwd; ulimit -n; touch made-by-job; exec " +
                                            counter() + " " + go_file("sim")});
  ASSERT_TRUE(wait_for("alice", "sim", "tick 5")) << service_log();
  std::string out = job_log("alice", "sim");
  // Her name, her umask, her environment, her directory, her limits (start_as sets 512 files).
  EXPECT_NE(out.find("alice\n0027\n" + alice.home + " alice\n" + alice.home + "\n512\n"), std::string::npos) << out;
  struct stat st {};
  ASSERT_EQ(::stat((alice.home + "/made-by-job").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, alice.uid);
  for (const std::string& d : {store("alice"), store("alice") + "/sim"}) {
    ASSERT_EQ(::stat(d.c_str(), &st), 0) << d;
    EXPECT_EQ(st.st_uid, alice.uid) << d;
    EXPECT_EQ(st.st_mode & 0777, 0700u) << d;
  }
  pid_t init = job_pid("alice", "sim");
  ASSERT_GT(init, 0);
  EXPECT_NE(ids_of(init).find("Uid:\t" + all_four(alice.uid)), std::string::npos) << ids_of(init);

  std::string err;
  ASSERT_EQ(as("alice", {"checkpoint", "--stop", "sim"}, nullptr, &err), 0) << err;
  EXPECT_EQ(wait_exit(run), 75);
  long at = last_tick("alice", "sim");
  ASSERT_EQ(::stat((store("alice") + "/sim/checkpoints/0001/manifest.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, alice.uid);

  pid_t back = spawn_as("alice", "sim", {"restore", "sim"});
  ASSERT_TRUE(wait_for("alice", "sim", "tick " + std::to_string(at + 20))) << service_log();
  init = job_pid("alice", "sim");
  EXPECT_NE(ids_of(init).find("Uid:\t" + all_four(alice.uid)), std::string::npos) << ids_of(init);
  EXPECT_NE(ids_of(init).find("Gid:\t" + all_four(alice.gid)), std::string::npos) << ids_of(init);
  std::ofstream(go_file("sim")) << "go\n";
  EXPECT_EQ(wait_exit(back), 0);
  // Every tick once, in order, and the counter's own check of its state.
  std::istringstream ss(job_log("alice", "sim"));
  long expect = 1;
  for (std::string line; std::getline(ss, line);)
    if (line.rfind("tick ", 0) == 0) {
      ASSERT_EQ(std::atol(line.c_str() + 5), expect);
      expect++;
    }
  EXPECT_GT(expect, at + 20);
  EXPECT_NE(job_log("alice", "sim").find("PASS"), std::string::npos);
  std::string ls;
  EXPECT_EQ(as("alice", {"ls"}, &ls), 0);
  EXPECT_NE(ls.find("sim"), std::string::npos) << ls;
  EXPECT_EQ(as("alice", {"rm", "sim"}, nullptr, &err), 0) << err;
  EXPECT_FALSE(fs::exists(store("alice") + "/sim"));
}

// bob reaches none of alice's job: not by name, not by pointing at her
// store, not through the service; her job runs on untouched.
TEST_F(UsersTest, AnotherUserCannotTouchHerJob) {
  alice_counter("sim");
  std::map<std::string, std::string> hers = {{"CRYO_STORE", store("alice")}};
  std::string err;
  for (std::vector<std::string> args : {std::vector<std::string>{"status", "sim"}, {"checkpoint", "sim"},
                                        {"verify", "sim"}, {"rm", "sim"}, {"restore", "sim"}}) {
    EXPECT_NE(as("bob", args, nullptr, &err, hers), 0) << args[0];
    // (The service's cryo takes no store from his environment: a restore looks in his own.)
    EXPECT_TRUE(err.find("Permission denied") != std::string::npos || err.find("belongs to") != std::string::npos ||
                err.find("not to you") != std::string::npos || err.find("no job named 'sim' in " + store("bob")) != std::string::npos)
        << args[0] << ": " << err;
    EXPECT_NE(as("bob", {"--store", store("alice"), args[0], "sim"}, nullptr, &err), 0) << args[0];
    EXPECT_NE(as("bob", args, nullptr, &err), 0) << args[0] << " by name, in his own store";
  }
  long before = last_tick("alice", "sim");
  EXPECT_TRUE(wait_for("alice", "sim", "tick " + std::to_string(before + 10))) << "her job stopped";
  EXPECT_FALSE(fs::exists(store("alice") + "/sim/checkpoints/0001"));
  EXPECT_TRUE(fs::exists(store("alice") + "/sim/job.json"));
}

// A job one of whose processes runs with more than its owner's privilege
// (here a setuid-root program) is not checkpointed, and runs on.
TEST_F(UsersTest, AJobThatGainedPrivilegeIsNotCheckpointed) {
  std::string suid = dir_ + "/suid-sleep";
  fs::copy_file("/bin/sleep", suid);
  ASSERT_EQ(::chmod(suid.c_str(), 04755), 0);
  spawn_as("alice", "raised", {"run", "--name", "raised", "--", "sh", "-c", "echo started; exec " + suid + " 60"});
  ASSERT_TRUE(wait_for("alice", "raised", "started"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string err;
  EXPECT_EQ(as("alice", {"checkpoint", "raised"}, nullptr, &err), 1);
  EXPECT_NE(err.find("runs with more privilege than its owner alice"), std::string::npos) << err;
  EXPECT_NE(err.find("effective uid is 0"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(store("alice") + "/raised/checkpoints/0001"));
  pid_t init = job_pid("alice", "raised");
  EXPECT_EQ(::kill(init, 0), 0) << "the job must run on";
}

// Puts checkpoint 0001 of the job at `from` into the job at `to` as its
// latest, `id`, with the chunks it names: what a user (or a root who signs
// what he should not) could make of another job's checkpoint.
void borrow(const std::string& from, const std::string& to, const std::string& id, const User& as) {
  fs::copy(from + "/checkpoints/0001", to + "/checkpoints/" + id, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(from + "/chunks")) {
    std::string rel = fs::relative(e.path(), from).string();
    if (!fs::exists(to + "/" + rel)) {
      if (e.is_directory()) fs::create_directories(to + "/" + rel);
      else fs::copy_file(e.path(), to + "/" + rel);
    }
  }
  fs::remove(to + "/latest");
  fs::create_symlink("checkpoints/" + id, to + "/latest");
  for (const auto& e : fs::recursive_directory_iterator(to))
    (void)!::lchown(e.path().c_str(), as.uid, as.gid);
}

// Checkpoints signed with the site's key but not of her job (root's, whose
// process runs as root; bob's) are refused before CRIU starts, whatever
// the signature says; one she edited is refused as damaged.
TEST_F(UsersTest, BorrowedOrEditedImagesAreRefused) {
  pid_t run = alice_counter("sim");
  std::string err;
  ASSERT_EQ(as("alice", {"checkpoint", "--stop", "sim"}, nullptr, &err), 0) << err;
  wait_exit(run);
  // root's own job of the same name, in root's store.
  std::string root_store = dir_ + "/rootstore";
  pid_t root_run = ::fork();
  if (root_run == 0) {
    ::setenv("CRYO_STORE", root_store.c_str(), 1);
    ::setenv("CRYO_FAST_TIER", fast_.c_str(), 1);
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl(CRYO_BIN, CRYO_BIN, "run", "--name", "sim", "--", "sleep", "600", nullptr);
    ::_exit(127);
  }
  spawned_.push_back(root_run);
  for (int i = 0; i < 200 && !fs::exists(root_store + "/sim/control.sock"); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  ASSERT_EQ(sh("CRYO_STORE=" + root_store + " CRYO_FAST_TIER=" + fast_ + " " + CRYO_BIN +
               " checkpoint --stop sim >/dev/null 2>&1; echo $?"), "0\n");
  wait_exit(root_run);
  // bob's job, checkpointed by bob.
  pid_t bobs = spawn_as("bob", "sim", {"run", "--name", "sim", "--", counter(), go_file("bobsim")});
  ASSERT_TRUE(wait_for("bob", "sim", "tick 5"));
  ASSERT_EQ(as("bob", {"checkpoint", "--stop", "sim"}, nullptr, &err), 0) << err;
  wait_exit(bobs);

  // The donors' files are there for her to see (the job's directory is its
  // init's working directory), so that only what the images say differs.
  for (const std::string& d : {root_store, root_store + "/sim", store("bob"), store("bob") + "/sim"})
    fs::permissions(d, fs::perms::others_read | fs::perms::others_exec, fs::perm_options::add);
  std::string hers = store("alice") + "/sim";
  struct Donor {
    std::string dir, id, why;
  } donors[] = {{root_store + "/sim", "0002", "its real uid is 0"},
                {store("bob") + "/sim", "0003", "its real uid is " + std::to_string(users_.at("bob").uid)}};
  // Her logs longer than any donor's: a restore cuts them back to the
  // checkpoint's size, and refuses one shorter (not the check under test).
  for (const char* log : {"/stdout.log", "/stderr.log"})
    std::ofstream(hers + log, std::ios::app) << std::string(4096, '#') << "\n";
  for (const auto& d : donors) {
    borrow(d.dir, hers, d.id, users_.at("alice"));
    EXPECT_EQ(as("alice", {"restore", "sim"}, nullptr, &err), 1) << d.dir;
    EXPECT_NE(err.find("checkpoint " + d.id + " is not restored: its thread"), std::string::npos) << err;
    EXPECT_NE(err.find(d.why), std::string::npos) << err;
    EXPECT_EQ(sh("ps -u 0 -o args= | grep -c '^sleep 600$'"), "0\n") << "root's process came back";
  }
  // Her own checkpoint, edited in place, is refused as damaged.
  fs::remove(hers + "/latest");
  fs::create_symlink("checkpoints/0001", hers + "/latest");
  for (const auto& e : fs::recursive_directory_iterator(hers + "/chunks"))
    if (e.is_regular_file() && e.path().extension() == ".pack") {
      std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(4200);
      f.put('\x5a');
    }
  EXPECT_EQ(as("alice", {"restore", "--durable", "--from", "0001", "sim"}, nullptr, &err), 1);
  EXPECT_TRUE(err.find("damaged") != std::string::npos || err.find("does not match") != std::string::npos) << err;
}

// A restore opens her job's files only as she could: each file the job
// held (open for reading, mapped, its executable, its working directory, a
// named pipe), replaced after the checkpoint by a link to a root-only file
// of the same size, or by a hard link to one where the kernel allows it,
// is refused before anything runs; put back, the job continues with its
// own data, and its pipe works.
TEST_F(UsersTest, FilesSwappedAfterTheCheckpointAreNotOpenedForHer) {
  const User& alice = users_.at("alice");
  auto hers = [&](const std::string& name) { return alice.home + "/" + name; };
  // Her files; root's, of the same sizes and modes (CRIU itself refuses
  // another mode), in a directory she can search.
  std::string secret = dir_ + "/secret";
  fs::create_directories(secret + "/work");
  fs::create_directories(hers("work"));
  auto fill = [](const std::string& path, const std::string& head, size_t size) {
    std::ofstream(path) << head << "\n" << std::string(size - head.size() - 1, '.');
  };
  for (const auto& [name, size] : {std::pair<std::string, size_t>{"data.txt", 4096}, {"map.bin", 8192}}) {
    fill(hers(name), "alice's " + name, size);
    fill(secret + "/" + name, "SECRET " + name, size);
  }
  fill(hers("work/note"), "alice's note", 64);
  fill(secret + "/work/note", "SECRET note", 64);
  for (const std::string& side : {hers(""), secret + "/"}) ASSERT_EQ(::mkfifo((side + "pipe").c_str(), 0640), 0);
  fs::copy_file(std::string(CRYO_PROGS) + "/holdfiles", hers("holdfiles"), fs::copy_options::overwrite_existing);
  fs::copy_file(std::string(CRYO_PROGS) + "/holdfiles", secret + "/holdfiles");  // the same build, root's alone
  for (const std::string& side : {hers(""), secret + "/"}) {
    for (const char* f : {"data.txt", "map.bin", "work/note", "pipe"}) ASSERT_EQ(::chmod((side + f).c_str(), 0640), 0);
    for (const char* f : {"holdfiles", "work"}) ASSERT_EQ(::chmod((side + f).c_str(), 0750), 0);
  }
  sh("chown -R alice: " + hers("work") + " " + hers("data.txt") + " " + hers("map.bin") + " " + hers("holdfiles") + " " +
     hers("pipe"));

  pid_t run = spawn_as("alice", "files", {"run", "--name", "files", "--", "sh", "-c",
                                          "cd work && exec ../holdfiles " + go_file("files") + " ../data.txt ../map.bin note ../pipe"});
  ASSERT_TRUE(wait_for("alice", "files", "tick 5")) << service_log() << job_log("alice", "files");
  std::string err;
  ASSERT_EQ(as("alice", {"checkpoint", "--stop", "files"}, nullptr, &err), 0) << err;
  EXPECT_EQ(wait_exit(run), 75);
  long at = last_tick("alice", "files");

  auto as_alice = [&](const std::string& cmd) {
    int rc = 0;
    sh("runuser -u alice -- sh -c 'cd && " + cmd + "' 2>&1", &rc);
    return rc;
  };
  for (std::string name : {"data.txt", "map.bin", "holdfiles", "work", "pipe"}) {
    ASSERT_EQ(as_alice("mv " + name + " " + name + ".real && ln -s " + secret + "/" + name + " " + name), 0) << name;
    EXPECT_EQ(as("alice", {"restore", "files"}, nullptr, &err), 1) << name;
    EXPECT_NE(err.find(hers(name)), std::string::npos) << name << ": " << err;
    EXPECT_EQ(sh("pgrep -c -u alice holdfiles"), "0\n") << name << ": a process came back";
    ASSERT_EQ(as_alice("rm " + name + " && mv " + name + ".real " + name), 0) << name;
  }
  // protected_hardlinks stops this where it is set; where it is not, the restore must.
  if (as_alice("mv data.txt data.txt.real && ln " + secret + "/data.txt data.txt") == 0) {
    EXPECT_EQ(as("alice", {"restore", "files"}, nullptr, &err), 1) << "a hard link to root's file";
    EXPECT_NE(err.find(hers("data.txt")), std::string::npos) << err;
    as_alice("rm data.txt");
  }
  as_alice("test -e data.txt || mv data.txt.real data.txt");

  pid_t back = spawn_as("alice", "files", {"restore", "files"});
  ASSERT_TRUE(wait_for("alice", "files", "tick " + std::to_string(at + 10))) << service_log();
  std::ofstream(go_file("files")) << "go\n";
  EXPECT_EQ(wait_exit(back), 0);
  std::string out = job_log("alice", "files");
  EXPECT_NE(out.find("PASS"), std::string::npos) << out;
  EXPECT_NE(out.find("data: alice's data.txt\nmap: alice's map.bin\nnote: alice's note\npipe: through the pipe\n"),
            std::string::npos)
      << out;
  // Root's named pipe is still root's.
  struct stat pipe_st {};
  ASSERT_EQ(::stat((secret + "/pipe").c_str(), &pipe_st), 0);
  EXPECT_EQ(pipe_st.st_uid, 0u);
  EXPECT_EQ(out.find("SECRET"), std::string::npos) << out;
  EXPECT_EQ(out.find("changed"), std::string::npos) << out;
}

// CRIU binds a Unix socket again, and connects its peers to it, by its
// path and as root: her job with a socket bound in her home is not
// checkpointed, saying why, and runs on; with an abstract name (no path)
// it is checkpointed and continues from its checkpoint, connected.
TEST_F(UsersTest, HerJobsSocketIsCheckpointedOnlyWithoutAPath) {
  const User& alice = users_.at("alice");
  std::string prog = std::string(CRYO_PROGS) + "/unixsock";
  pid_t run = spawn_as("alice", "sock", {"run", "--name", "sock", "--", prog, go_file("sock"), alice.home + "/app.sock"});
  ASSERT_TRUE(wait_for("alice", "sock", "tick 5")) << service_log() << job_log("alice", "sock");
  std::string err;
  EXPECT_EQ(as("alice", {"checkpoint", "sock"}, nullptr, &err), 1);
  EXPECT_NE(err.find("has a Unix socket bound at '" + alice.home + "/app.sock'"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(store("alice") + "/sock/checkpoints/0001"));
  long at = last_tick("alice", "sock");
  EXPECT_TRUE(wait_for("alice", "sock", "tick " + std::to_string(at + 5))) << "the job did not run on";
  std::ofstream(go_file("sock")) << "go\n";
  EXPECT_EQ(wait_exit(run), 0);

  pid_t abstract = spawn_as("alice", "asock", {"run", "--name", "asock", "--", prog, go_file("asock"), "@cryo-alice"});
  ASSERT_TRUE(wait_for("alice", "asock", "tick 5")) << service_log() << job_log("alice", "asock");
  ASSERT_EQ(as("alice", {"checkpoint", "--stop", "asock"}, nullptr, &err), 0) << err;
  EXPECT_EQ(wait_exit(abstract), 75);
  at = last_tick("alice", "asock");
  pid_t back = spawn_as("alice", "asock", {"restore", "asock"});
  ASSERT_TRUE(wait_for("alice", "asock", "tick " + std::to_string(at + 10))) << service_log();
  std::ofstream(go_file("asock")) << "go\n";
  EXPECT_EQ(wait_exit(back), 0);
  std::string out = job_log("alice", "asock");
  EXPECT_NE(out.find("PASS"), std::string::npos) << out;
  EXPECT_EQ(out.find("lost"), std::string::npos) << out;
}

// An MPI job of hers, on one node.  Where root lacks CAP_SYS_RESOURCE (as
// on cryo's test machines), CRIU cannot save a user's job network, and the
// run is refused at once, saying so; elsewhere it checkpoints and goes on.
TEST_F(UsersTest, AnMpiJobOfHersOnOneNode) {
  std::string status;
  read_text("/proc/self/status", &status);
  auto at = status.find("CapBnd:");
  bool lacks = at != std::string::npos && !(std::stoull(status.substr(at + 7, 20), nullptr, 16) & (1ull << 24));
  std::vector<std::string> ring = {"mpiexec.mpich", "-n", "2", std::string(CRYO_PROGS) + "/ring_mpich", "100000", "20"};
  std::vector<std::string> args = {"run", "--name", "ring", "--"};
  args.insert(args.end(), ring.begin(), ring.end());
  if (lacks) {
    std::string err;
    EXPECT_EQ(as("alice", args, nullptr, &err), 1);
    EXPECT_NE(err.find("this node's root lacks CAP_SYS_RESOURCE"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(store("alice") + "/ring"));
    return;
  }
  pid_t run = spawn_as("alice", "ring", args);
  ASSERT_TRUE(wait_for("alice", "ring", "round 20")) << service_log();
  std::string err;
  ASSERT_EQ(as("alice", {"checkpoint", "--stop", "ring"}, nullptr, &err), 0) << err;
  EXPECT_EQ(wait_exit(run), 75);
  auto rounds = [&] {
    std::istringstream ss(job_log("alice", "ring"));
    long n = 0;
    for (std::string line; std::getline(ss, line);)
      if (line.rfind("round ", 0) == 0) n++;
    return n;
  };
  long at_stop = rounds();
  spawn_as("alice", "ring", {"restore", "ring"});
  ASSERT_TRUE(wait_for("alice", "ring", "round " + std::to_string(at_stop + 20))) << service_log();
  EXPECT_NE(ids_of(job_pid("alice", "ring")).find("Uid:\t" + all_four(users_.at("alice").uid)), std::string::npos);
}

// Her Apptainer image, run by cryo as her, stopped at a checkpoint and
// continued: the ticker checks its memory and its sum at the end.
TEST_F(UsersTest, HerApptainerJobContinuesFromItsCheckpoint) {
  std::string rootfs = build_rootfs(dir_ + "/image");
  std::string sif = sif_image(rootfs, dir_ + "/image");
  if (sif.empty()) GTEST_SKIP() << "needs Apptainer (scripts/install-apptainer.sh)";
  sh("chmod -R a+rX " + dir_ + "/image");
  std::string go = dir_ + "/go-app";
  fs::create_directory(go);
  fs::permissions(go, fs::perms::all);
  pid_t run = spawn_as("alice", "app", {"run", "--name", "app", "--apptainer", sif, "--engine-opt=--bind=" + go + ":/go",
                                        "--", "/bin/ticker", "/go/go"});
  ASSERT_TRUE(wait_for("alice", "app", "tick 5")) << service_log();
  std::string err;
  ASSERT_EQ(as("alice", {"checkpoint", "--stop", "app"}, nullptr, &err), 0) << err;
  EXPECT_EQ(wait_exit(run), 75);
  long at = last_tick("alice", "app");
  pid_t back = spawn_as("alice", "app", {"restore", "app"});
  ASSERT_TRUE(wait_for("alice", "app", "tick " + std::to_string(at + 10))) << service_log();
  EXPECT_NE(ids_of(job_pid("alice", "app")).find("Uid:\t" + all_four(users_.at("alice").uid)), std::string::npos);
  std::ofstream(go + "/go") << "go\n";
  EXPECT_EQ(wait_exit(back), 0);
  EXPECT_NE(job_log("alice", "app").find("PASS"), std::string::npos) << job_log("alice", "app");
}

// What only the site chooses (what runs as root, where) is refused.
TEST_F(UsersTest, TheServiceRunsNoCriuAUserNames) {
  std::string err;
  EXPECT_EQ(as("alice", {"--criu", "/bin/true", "run", "--name", "x", "--", "true"}, nullptr, &err), 1);
  EXPECT_NE(err.find("--criu is the site's to choose"), std::string::npos) << err;
  EXPECT_EQ(as("alice", {"run", "--podman", "docker.io/library/alpine", "--", "true"}, nullptr, &err), 1);
  EXPECT_NE(err.find("root's alone"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(store("alice") + "/x"));
}

// One byte and room for one descriptor (SCM_RIGHTS).
struct FdMessage {
  msghdr m{};
  char c = 0;
  iovec v{&c, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  FdMessage() {
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
  }
  FdMessage(const FdMessage&) = delete;
};

// The service under abuse: malformed, oversized and refused requests, a
// caller gone at once, a thousand connections at once.  It answers each, and
// serves alice afterwards.
TEST_F(UsersTest, TheServiceSurvivesBadCallers) {
  auto connect_as = [&](uid_t uid) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(sv[0]);
      if (::setuid(uid) != 0) ::_exit(99);
      int s = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::strncpy(a.sun_path, socket_.c_str(), sizeof a.sun_path - 1);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(98);
      // Hand the connection to the test, which speaks through it as bob.
      FdMessage msg;
      cmsghdr* h = CMSG_FIRSTHDR(&msg.m);
      h->cmsg_level = SOL_SOCKET;
      h->cmsg_type = SCM_RIGHTS;
      h->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(h), &s, sizeof s);
      ::_exit(::sendmsg(sv[1], &msg.m, 0) == 1 ? 0 : 97);
    }
    ::close(sv[1]);
    FdMessage msg;
    int fd = -1;
    if (::recvmsg(sv[0], &msg.m, 0) == 1) std::memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg.m)), sizeof fd);
    ::close(sv[0]);
    ::waitpid(pid, nullptr, 0);
    return fd;
  };
  auto answer = [](int fd) {
    pollfd p{fd, POLLIN, 0};
    std::string buf(65536, '\0');
    if (::poll(&p, 1, 20000) != 1) return std::string("(no answer)");
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    return n > 0 ? buf.substr(0, static_cast<size_t>(n)) : std::string("(closed)");
  };
  uid_t bob = users_.at("bob").uid;
  int fd = connect_as(bob);
  ASSERT_GE(fd, 0);
  ::send(fd, "\xff\xff\xff garbage", 12, 0);
  EXPECT_NE(answer(fd).find("does not parse"), std::string::npos);
  ::close(fd);
  fd = connect_as(bob);
  std::string huge(2 << 20, 'x');
  int big = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  ::send(fd, huge.data(), huge.size(), 0);
  EXPECT_NE(answer(fd), "(no answer)");
  ::close(fd);
  fd = connect_as(bob);
  ::close(fd);  // gone at once
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  rlimit more{std::min<rlim_t>(files.rlim_max, 4096), files.rlim_max};
  ::setrlimit(RLIMIT_NOFILE, &more);
  std::vector<int> many;
  for (int i = 0; i < 1000; i++)
    if (int f = connect_as(bob); f >= 0) many.push_back(f);
  EXPECT_EQ(many.size(), 1000u);
  for (int f : many) ::close(f);
  ::setrlimit(RLIMIT_NOFILE, &files);
  EXPECT_EQ(::kill(cryod_, 0), 0) << "cryod died: " << service_log();
  std::string err;
  EXPECT_EQ(as("alice", {"run", "--name", "after", "--", "true"}, nullptr, &err), 0) << err << service_log();
}

// 'cryo check' as a user says whether the node is ready for her: its
// service, her store, the key only root reads.
TEST_F(UsersTest, CheckSaysWhetherTheNodeIsReadyForHer) {
  auto item = [](const std::string& out, const std::string& name) {
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_object())
      for (const auto& i : j["checks"])
        if (i["name"] == name) return i;
    return nlohmann::json::object();
  };
  std::string out;
  as("alice", {"check", "--json"}, &out);
  EXPECT_EQ(item(out, "service")["status"], "pass") << out;
  EXPECT_EQ(item(out, "store")["status"], "pass") << out;
  as("alice", {"check", "--json"}, &out, nullptr, {{"CRYO_SERVICE", dir_ + "/none.sock"}});
  EXPECT_EQ(item(out, "service")["status"], "fail") << out;
  EXPECT_NE(item(out, "service").value("fix", "").find("systemctl enable --now cryod.socket"), std::string::npos) << out;
  // A store others may enter is named, with the fix.
  fs::create_directories(store("alice"));
  ASSERT_EQ(::chown(store("alice").c_str(), users_.at("alice").uid, users_.at("alice").gid), 0);
  fs::permissions(store("alice"), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  as("alice", {"check", "--json"}, &out);
  EXPECT_EQ(item(out, "store")["status"], "fail") << out;
  EXPECT_NE(item(out, "store").value("fix", "").find("chmod 700 " + store("alice")), std::string::npos) << out;
  std::string err;
  EXPECT_EQ(as("alice", {"run", "--name", "open", "--", "true"}, nullptr, &err), 1);
  EXPECT_NE(err.find("can be read or written by other users (mode 0705)"), std::string::npos) << err;
}

// Without the service, a user's run says what is missing and makes nothing.
TEST_F(UsersTest, WithoutTheServiceARunSaysHowToGetIt) {
  std::string err;
  EXPECT_EQ(as("alice", {"run", "--name", "x", "--", "true"}, nullptr, &err, {{"CRYO_SERVICE", dir_ + "/none.sock"}}), 1);
  EXPECT_NE(err.find("goes through cryo's service on this node, and it is not running"), std::string::npos) << err;
  EXPECT_NE(err.find("systemctl enable --now cryod.socket"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(store("alice") + "/x"));
}

// alice's jobs under a real Slurm cluster (scripts/slurm-cluster.sh, with
// proctrack/cgroup and task/cgroup), submitted by her with 'cryo sbatch'.
class UsersSlurmTest : public UsersTest {
 protected:
  void before_service() override {
    std::string out;
    ASSERT_TRUE(slurm_.up(dir_ + "/slurm", 27817, 2, &out)) << out;
    slurm_conf_ = slurm_.conf();
    out_ = dir_ + "/alice-out";
    fs::create_directory(out_);
    ASSERT_EQ(::chown(out_.c_str(), users_.at("alice").uid, users_.at("alice").gid), 0);
  }
  void TearDown() override {
    slurm_.down(slurm_jobs_);
    UsersTest::TearDown();
  }
  // 'cryo sbatch' as alice; returns the Slurm job id.
  std::string submit(const std::vector<std::string>& args) {
    std::string id = sbatch(
        [&](const std::vector<std::string>& a, std::string* out, std::string* err) {
          return as("alice", a, out, err, {{"SLURM_CONF", slurm_conf_}});
        },
        args, slurm_jobs_);
    jobs_.emplace_back("alice", "slurm-" + id);
    return id;
  }
  bool wait_event(const std::string& job, const std::string& text, double timeout) {
    return wait_for_text(store("alice") + "/" + job + "/cryo.log", text, timeout);
  }
  std::string solver() const { return std::string(CRYO_PROGS) + "/solver"; }

  SlurmCluster slurm_;
  std::string out_;
  std::vector<std::string> slurm_jobs_;
};

// The smallest memory limit on the cgroups of process `pid`, from its own
// up (cgroup v1's memory controller, or v2's memory.max); 0 if none.
uint64_t memory_limit(pid_t pid) {
  std::string cgroups;
  read_text("/proc/" + std::to_string(pid) + "/cgroup", &cgroups);
  std::istringstream ss(cgroups);
  std::string base, path, file;
  for (std::string line; std::getline(ss, line);) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    std::string controllers = line.substr(a + 1, b - a - 1);
    if (controllers.find("memory") != std::string::npos) {
      base = "/sys/fs/cgroup/memory", path = line.substr(b + 1), file = "memory.limit_in_bytes";
      break;
    }
    if (controllers.empty() && base.empty()) base = "/sys/fs/cgroup", path = line.substr(b + 1), file = "memory.max";
  }
  uint64_t least = 0;
  for (; !path.empty(); path = path.substr(0, path.rfind('/'))) {
    std::string text;
    if (!read_text(base + path + "/" + file, &text) || text.rfind("max", 0) == 0) continue;
    uint64_t v = std::strtoull(text.c_str(), nullptr, 10);
    if (v > 0 && (least == 0 || v < least)) least = v;
  }
  return least;
}

// The Slurm acceptance test, submitted by alice: a computation that needs
// several one-minute allocations finishes with the output of an
// uninterrupted run; every allocation ran it as her, in the Slurm job's
// cgroup, under the memory limit she asked for.
TEST_F(UsersSlurmTest, HerTimeLimitedJobContinuesAcrossRequeuesUntilDone) {
  const std::string steps = "400";  // 400 x 250 ms: at least 3 allocations of at most 40 s
  std::string expect = sh(solver() + " " + steps + " 0");
  ASSERT_NE(expect.find("RESULT "), std::string::npos);
  std::string out = out_ + "/slurm.out", err = out_ + "/slurm.err", result = out_ + "/result.txt";
  std::string id = submit({"--margin", "20s", "--time=1", "--mem=200M", "--output=" + out, "--error=" + err, "--",
                           solver(), steps, "250", result});
  std::string job = "slurm-" + id;
  ASSERT_TRUE(wait_event(job, "started in Slurm job", 60)) << service_log();
  pid_t init = wait_job_pid("alice", job);
  EXPECT_NE(ids_of(init).find("Uid:\t" + all_four(users_.at("alice").uid)), std::string::npos) << ids_of(init);
  std::string cgroup;
  read_text("/proc/" + std::to_string(init) + "/cgroup", &cgroup);
  EXPECT_NE(cgroup.find("/job_" + id + "/"), std::string::npos) << cgroup;
  ASSERT_TRUE(wait_event(job, "restored from checkpoint", 120)) << service_log();
  init = wait_job_pid("alice", job, init);
  read_text("/proc/" + std::to_string(init) + "/cgroup", &cgroup);
  EXPECT_NE(cgroup.find("/job_" + id + "/"), std::string::npos) << "a restored process left the job's cgroup: " << cgroup;
  EXPECT_EQ(memory_limit(init), 200u << 20) << "the restored job is not under its --mem: " << cgroup;
  // Slurm's accounting sees the restored processes: sstat lists them among
  // the batch step's.
  std::string step = trim(sh("sstat -n -P -i -j " + id + ".batch 2>&1"));
  std::string pids = "," + step.substr(step.rfind('|') + 1) + ",";
  EXPECT_NE(pids.find("," + std::to_string(init) + ","), std::string::npos)
      << "Slurm's accounting does not see the restored job (pid " << init << "): " << step;
  EXPECT_NE(ids_of(init).find("Uid:\t" + all_four(users_.at("alice").uid)), std::string::npos) << ids_of(init);
  ASSERT_TRUE(wait_slurm_gone(id, 420)) << "still " << slurm_state(id) << " after 7 minutes";

  std::string got, errors, file;
  read_text(out, &got);
  read_text(err, &errors);
  read_text(result, &file);
  EXPECT_EQ(got, expect) << "the Slurm output file differs from an uninterrupted run; cryo said:\n" << errors;
  EXPECT_EQ(file, expect) << "the result file differs";
  struct stat st {};
  ASSERT_EQ(::stat(result.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, users_.at("alice").uid);
  std::string status_out;
  ASSERT_EQ(as("alice", {"status", "--json", job}, &status_out), 0);
  auto s = nlohmann::json::parse(status_out, nullptr, false);
  EXPECT_EQ(s.value("state", ""), "finished") << status_out;
  EXPECT_GE(s.value("allocations", nlohmann::json::array()).size(), 3u) << status_out;
}

// scancel ends her job and every process cryo started or restored for it:
// they are all in the Slurm job's cgroup.
TEST_F(UsersSlurmTest, ScancelEndsEverythingOfHerJob) {
  std::string id = submit({"--every", "2s", "-o", "/dev/null", "-e", out_ + "/slurm.err", "--", solver(), "600", "100"});
  std::string job = "slurm-" + id;
  ASSERT_TRUE(wait_event(job, "checkpoint 0001 committed", 60)) << service_log();
  pid_t init = wait_job_pid("alice", job);
  std::string state;
  read_text(store("alice") + "/" + job + "/state.json", &state);
  auto j = nlohmann::json::parse(state, nullptr, false);
  pid_t supervisor = j.is_object() ? j.value("supervisor_pid", 0) : 0;
  ASSERT_GT(init, 0);
  ASSERT_GT(supervisor, 0);
  std::string cgroup;
  read_text("/proc/" + std::to_string(supervisor) + "/cgroup", &cgroup);
  EXPECT_NE(cgroup.find("/job_" + id + "/"), std::string::npos) << "the service's cryo is outside her job: " << cgroup;
  sh("scancel " + id);
  ASSERT_TRUE(wait_slurm_gone(id, 90));
  for (int i = 0; i < 100 && (::kill(init, 0) == 0 || ::kill(supervisor, 0) == 0); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_NE(::kill(init, 0), 0) << "her job outlived scancel";
  EXPECT_NE(::kill(supervisor, 0), 0) << "its supervisor outlived scancel";
}

}  // namespace
}  // namespace cryo::test
