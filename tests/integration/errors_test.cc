// Bad input gets a clear one-line error, a non-zero exit, and loses nothing.
#include <signal.h>
#include <sys/mount.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <fstream>
#include <map>

#include "harness.h"

namespace cryo::test {
namespace {

namespace fs = std::filesystem;
using ErrorTest = CryoTest;

// Runs cryo with args as user nobody, its stdout and stderr kept in files
// under dir (which nobody need not write); returns its exit status.
int as_nobody(const std::string& dir, const std::vector<std::string>& args, std::string* out, std::string* err) {
  std::string out_file = dir + "/nobody.out", err_file = dir + "/nobody.err";
  pid_t pid = ::fork();
  if (pid == 0) {
    int o = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    int e = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) ::_exit(98);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(99);
    std::vector<char*> argv = {const_cast<char*>(CRYO_BIN)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(CRYO_BIN, argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (out) read_text(out_file, out);
  if (err) read_text(err_file, err);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_F(ErrorTest, UnknownJob) {
  std::string err;
  for (auto verb : {"status", "checkpoint", "restore", "verify", "rm"}) {
    EXPECT_EQ(cryo({verb, "nosuchjob"}, nullptr, &err), 1) << verb;
    EXPECT_NE(err.find("no job named 'nosuchjob'"), std::string::npos) << err;
  }
  // With --json the error is also on stdout, as JSON; without, stdout stays empty.
  for (auto verb : {"status", "checkpoint"}) {
    std::string out;
    EXPECT_EQ(cryo({verb, "--json", "nosuchjob"}, &out, &err), 1) << verb;
    auto j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << verb << ": " << out;
    EXPECT_NE(j.value("error", "").find("no job named 'nosuchjob'"), std::string::npos) << out;
    EXPECT_NE(j.value("hint", "").find("cryo ls"), std::string::npos) << out;
    EXPECT_NE(err.find("no job named 'nosuchjob'"), std::string::npos) << err;
    EXPECT_EQ(cryo({verb, "nosuchjob"}, &out, &err), 1) << verb;
    EXPECT_EQ(out, "") << verb;
  }
}

TEST_F(ErrorTest, FinishedJob) {
  go("done");
  EXPECT_EQ(cryo({"run", "--name", "done", "--quiet", "--", prog("counter"), go_file("done")}), 0);
  std::string err;
  EXPECT_EQ(cryo({"checkpoint", "done"}, nullptr, &err), 1);
  EXPECT_NE(err.find("has finished (exit status 0)"), std::string::npos) << err;
  EXPECT_EQ(cryo({"restore", "done"}, nullptr, &err), 1);
  EXPECT_NE(err.find("has finished (exit status 0)"), std::string::npos) << err;
  EXPECT_NE(err.find("--force"), std::string::npos) << err;
}

// Options that make no sense stop cryo before it makes anything: usage
// errors with status 2, a zero period with status 1, each saying what is
// wrong.
TEST_F(ErrorTest, BadOptionsSayWhatIsWrong) {
  std::string err;
  EXPECT_EQ(cryo({"run", "--keep", "-1", "--", prog("counter"), go_file("k")}, nullptr, &err), 2);
  EXPECT_NE(err.find("--keep: must be 0 (keep all) or more"), std::string::npos) << err;
  EXPECT_EQ(cryo({"run", "--every", "0s", "--", prog("counter"), go_file("k")}, nullptr, &err), 1);
  EXPECT_NE(err.find("duration '0s' is zero"), std::string::npos) << err;
  EXPECT_TRUE(fs::is_empty(store_)) << "nothing may be made for a job that does not start";
}

// Without "--", what follows the command's first word is the command's,
// options too: 'cryo run ./solver -n 5' must not name the job "5".
TEST_F(ErrorTest, OptionsAfterTheCommandAreTheCommands) {
  ASSERT_EQ(cryo({"run", "--quiet", "--name", "opts", "/bin/echo", "--name", "x", "-n", "5", "--", "y"}), 0);
  std::string out;
  read_text(store_ + "/opts/stdout.log", &out);
  EXPECT_EQ(out, "--name x -n 5 -- y\n");
  EXPECT_FALSE(fs::exists(store_ + "/x"));
  EXPECT_FALSE(fs::exists(store_ + "/5"));
}

// 'cryo sbatch' tells its own options from sbatch's and from the command
// by "--" alone, whatever comes before it (no Slurm needed for --print).
TEST_F(ErrorTest, SbatchTakesTheCommandAfterDashDash) {
  for (const std::vector<std::string>& before :
       {std::vector<std::string>{}, {"--time=30:00"}, {"--keep", "3", "--time=30:00"}, {"-p", "long", "--time", "1"}}) {
    std::vector<std::string> args = {"--fast-tier=none", "sbatch", "--print"};
    args.insert(args.end(), before.begin(), before.end());
    args.insert(args.end(), {"--", prog("solver"), "--", "x"});
    std::string out, err;
    ASSERT_EQ(cryo(args, &out, &err), 0) << err;
    EXPECT_NE(out.find(" -- " + prog("solver") + " -- x\n"), std::string::npos) << out;
    // sbatch's options on the line that submits, cryo's in the script.
    std::string sbatch_line = out.substr(0, out.find('\n'));
    for (const auto& b : before) {
      bool cryos = b == "--keep" || b == "3";
      EXPECT_EQ(sbatch_line.find(" " + b) != std::string::npos, !cryos) << b << ": " << sbatch_line;
    }
    if (before.size() == 3 && before[0] == "--keep") {
      EXPECT_NE(out.find(" run --checkpoint-on USR1 --keep 3 "), std::string::npos) << out;
    }
  }
  // --print among sbatch's options is cryo's, not sbatch's.
  std::string out, err;
  ASSERT_EQ(cryo({"--fast-tier=none", "sbatch", "--time=30:00", "--print", "--", prog("solver")}, &out, &err), 0) << err;
  std::string sbatch_line = out.substr(0, out.find('\n'));
  EXPECT_NE(sbatch_line.find("--time=30:00"), std::string::npos) << sbatch_line;
  EXPECT_EQ(sbatch_line.find("--print"), std::string::npos) << sbatch_line;
}

TEST_F(ErrorTest, CommandNotFound) {
  std::string err;
  EXPECT_EQ(cryo({"run", "--name", "x", "--", "/no/such/program"}, nullptr, &err), 127);
  EXPECT_NE(err.find("cannot run '/no/such/program': No such file or directory"), std::string::npos) << err;
}

TEST_F(ErrorTest, SecondCheckpointWhileOneRunsIsRefused) {
  pid_t run = spawn({"run", "--name", "big", "--", prog("memhog"), go_file("big"), "512"});
  ASSERT_TRUE(wait_for("big", "READY", 60));
  // Two requests at once: one checkpoints, the other is refused at once.
  std::string err1, err2;
  int rc1 = 0, rc2 = 0;
  std::thread t1([&] { rc1 = cryo({"checkpoint", "big", "--wait"}, nullptr, &err1); });
  std::thread t2([&] { rc2 = cryo({"checkpoint", "big", "--wait"}, nullptr, &err2); });
  t1.join();
  t2.join();
  EXPECT_EQ(rc1 + rc2, 1) << err1 << err2;
  EXPECT_NE((err1 + err2).find("already in progress"), std::string::npos) << err1 << err2;
  EXPECT_EQ(status("big")["checkpoints"].size(), 1u);
  go("big");
  EXPECT_EQ(wait_exit(run, 120), 0);
}

TEST_F(ErrorTest, ReadOnlyStore) {
  std::string ro = mount_tmpfs("size=1m", MS_RDONLY);
  std::string err;
  int rc = cryo({"--store", ro + "/store", "run", "--name", "x", "--", prog("counter"), go_file("x")}, nullptr, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("Read-only file system"), std::string::npos) << err;
  EXPECT_NE(err.find("hint:"), std::string::npos) << err;
}

// A dump that fails keeps its evidence: the error quotes CRIU's first real
// error (not its closing "Dumping FAILED"), with a hint, and names CRIU's
// log, which is kept in the job's logs/ (the newest few of them).  A job
// that is then killed says it has no checkpoint to continue from.
TEST_F(ErrorTest, AFailedDumpKeepsItsLogAndNamesTheCause) {
  // SysV shared memory of the host's IPC namespace: CRIU refuses it.
  pid_t run = spawn({"run", "--name", "hostipc", "--ipc", "host", "--", prog("shmcounter"), go_file("hostipc")});
  ASSERT_TRUE(wait_for("hostipc", "tick 5"));
  std::string out;
  EXPECT_EQ(cryo({"checkpoint", "hostipc", "--json"}, &out), 1);
  auto e = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(e.is_object()) << out;
  std::string message = e.value("error", ""), hint = e.value("hint", "");
  EXPECT_NE(message.find("doesn't live in IPC ns"), std::string::npos) << message;
  EXPECT_NE(hint.find("--ipc host"), std::string::npos) << hint;
  std::string logs = store_ + "/hostipc/logs/";
  auto at = hint.find(logs + "criu-dump-0001-failed-");
  ASSERT_NE(at, std::string::npos) << hint;
  std::string log = hint.substr(at, hint.find(".log", at) + 4 - at), text;
  ASSERT_TRUE(read_text(log, &text)) << log << " is gone";
  EXPECT_NE(text.find("doesn't live in IPC ns"), std::string::npos);
  EXPECT_EQ(::kill(job_pid("hostipc"), 0), 0) << "the job must keep running";
  for (int i = 0; i < 6; i++) EXPECT_EQ(cryo({"checkpoint", "hostipc"}), 1);
  int kept = 0;
  for (const auto& f : fs::directory_iterator(logs)) kept += f.path().filename().string().find("-failed-") != std::string::npos;
  EXPECT_EQ(kept, 5) << "the newest five failed dumps' logs are kept";
  ::kill(job_pid("hostipc"), SIGKILL);
  wait_exit(run);
  // The host's, which the job left.
  ::shmctl(static_cast<int>(last("hostipc", "shm")), IPC_RMID, nullptr);
  ::semctl(static_cast<int>(last("hostipc", "sem")), 0, IPC_RMID);
  std::string events;
  read_text(store_ + "/hostipc/cryo.log", &events);
  EXPECT_NE(events.find("CRIU's log: " + logs + "criu-dump-"), std::string::npos) << events;
  EXPECT_NE(events.find("it has no checkpoint to continue from"), std::string::npos) << events;
  EXPECT_EQ(events.find("continues it from"), std::string::npos) << events;
}

TEST_F(ErrorTest, FullStoreKeepsPreviousCheckpointAndJob) {
  std::string small = mount_tmpfs("size=64m");
  fs::remove(store_);  // the empty one SetUp made
  store_ = small + "/store";  // cryo() and spawn() use it
  pid_t run = spawn({"run", "--name", "full", "--", prog("memhog"), go_file("full"), "16"});
  ASSERT_TRUE(wait_for("full", "READY", 60));
  ASSERT_EQ(checkpoint("full"), "0001");
  {  // leave no room at all: the memory is unchanged, so dedup needs little
    std::ofstream filler(small + "/filler");
    std::string kib(4096, 'x');
    while (filler.write(kib.data(), kib.size()) && filler.flush()) {
    }
  }
  // The dump fits the fast tier; the store cannot take it.
  std::string err;
  EXPECT_EQ(cryo({"checkpoint", "full", "--wait"}, nullptr, &err), 1);
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_NE(err.find("disk is full"), std::string::npos) << err;
  EXPECT_NE(err.find("the job keeps running"), std::string::npos) << err;
  EXPECT_EQ(::kill(job_pid("full"), 0), 0) << "the job must keep running";
  auto s = status("full");
  EXPECT_EQ(s["latest"], "0001");
  EXPECT_EQ(s["checkpoints"].size(), 1u);
  EXPECT_EQ(cryo({"verify", "full"}), 0);
  fs::remove(small + "/filler");
  ::kill(job_pid("full"), SIGKILL);
  wait_exit(run);
  pid_t restore = spawn({"restore", "full"});
  ASSERT_TRUE(wait_for("full", "READY"));
  go("full");
  EXPECT_EQ(wait_exit(restore), 0);
  EXPECT_EQ(count("full", "PASS"), 1) << log("full");
}

TEST_F(ErrorTest, MissingCriuNamesTheFix) {
  std::string err;
  EXPECT_EQ(cryo({"run", "--name", "x", "--", "true"}, nullptr, &err, {{"CRYO_CRIU", "/nonexistent/criu"}}), 1);
  EXPECT_NE(err.find("cannot run CRIU at '/nonexistent/criu'"), std::string::npos) << err;
  EXPECT_NE(err.find("scripts/install-criu.sh"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(store_ + "/x")) << "nothing is created when CRIU is missing";
}

// A restore that cannot run CRIU changes nothing on the node: the job's
// result file keeps what the job wrote after the checkpoint (a restore
// puts the checkpoint's version back), and a restore with CRIU still works.
TEST_F(ErrorTest, RestoreWithoutCriuLeavesTheJobsFilesAlone) {
  std::string result = work_ + "/result.txt";
  ASSERT_GE(wrote_past_checkpoint("rf", result), 10);
  std::string before, after, err;
  ASSERT_TRUE(read_text(result, &before));
  EXPECT_EQ(cryo({"restore", "rf"}, nullptr, &err, {{"CRYO_CRIU", "/nonexistent/criu"}}), 1);
  EXPECT_NE(err.find("cannot run CRIU at '/nonexistent/criu'"), std::string::npos) << err;
  ASSERT_TRUE(read_text(result, &after));
  EXPECT_EQ(after, before) << "the result file was put back, and the job not restored";
  restore_ticking("rf", 10, {}, "wrote");
}

TEST_F(ErrorTest, OldCriuNamesTheFix) {
  if (!fs::exists("/usr/sbin/criu")) GTEST_SKIP() << "Debian's own criu package is not installed";
  std::string err;
  EXPECT_EQ(cryo({"--criu", "/usr/sbin/criu", "check"}, &err), 1);
  EXPECT_NE(err.find("install-criu.sh"), std::string::npos) << err;
  EXPECT_TRUE(err.find("too old") != std::string::npos || err.find("does not run on this kernel") != std::string::npos) << err;
}

// Runs a counter job with its fast tier on a new tmpfs (not this test's
// own) and stops it at checkpoint 0001; returns that tmpfs, or "".
std::string stopped_under_another_fast_tier(CryoTest& t, const std::string& job) {
  std::string other = t.mount_tmpfs("size=64m");
  pid_t run = t.spawn({"run", "--name", job, "--", t.prog("counter"), t.go_file(job)}, {{"CRYO_FAST_TIER", other}});
  if (!t.wait_for(job, "tick 3") || t.checkpoint(job, {"--stop"}) != "0001" || t.wait_exit(run) != 75) return "";
  return other;
}

// A job checkpointed under one fast tier and removed with another in
// effect: its fast copy, memory in a tmpfs, goes too.
TEST_F(ErrorTest, RmFreesAFastCopyMadeUnderAnotherFastTier) {
  std::string other = stopped_under_another_fast_tier(*this, "ft");
  ASSERT_FALSE(other.empty());
  auto copies = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(other)) n += e.path().filename().string().rfind("ft-", 0) == 0;
    return n;
  };
  ASSERT_EQ(copies(), 1) << "the checkpoint's fast copy is in " << other;
  EXPECT_EQ(cryo({"rm", "ft"}), 0);  // with this test's own fast tier
  EXPECT_EQ(copies(), 0);
}

// A job checkpointed under another fast tier than its restore's: the
// restore still finds the fast copy there, and the job goes on from it.
TEST_F(ErrorTest, RestoreFindsAFastCopyMadeUnderAnotherFastTier) {
  std::string other = stopped_under_another_fast_tier(*this, "ot");
  ASSERT_FALSE(other.empty());
  std::string events = restore_ticking("ot", 3);  // with this test's own fast tier
  EXPECT_NE(events.find("restored from checkpoint 0001 (fast copy)"), std::string::npos) << events;
  // The job ended: its fast copies, wherever they are, go.
  for (const auto& e : fs::directory_iterator(other)) ADD_FAILURE() << "left in the other fast tier: " << e.path();
}

// 'cryo check' tells a fast tier with huge pages from one without, and
// says how to mount one.
TEST_F(ErrorTest, CheckNamesAFastTierWithoutHugePagesAndTheFix) {
  std::string huge = mount_tmpfs("size=64m,huge=within_size"), small = mount_tmpfs("size=64m");
  auto item = [&](const std::string& dir) {
    std::string out;
    cryo({"--fast-tier", dir, "check", "--json"}, &out);
    auto j = nlohmann::json::parse(out, nullptr, false);
    for (const auto& i : j["checks"])
      if (i["name"] == "fast tier") return i;
    return nlohmann::json{{"missing", out}};
  };
  auto h = item(huge), s = item(small);
  EXPECT_EQ(h["status"], "pass") << h;
  EXPECT_NE(h["detail"].get<std::string>().find("huge pages"), std::string::npos) << h;
  EXPECT_EQ(s["status"], "warn") << s;
  EXPECT_NE(s["fix"].get<std::string>().find("huge=within_size"), std::string::npos) << s;
}

// 'cryo check' prints its own report, not CRIU's "Looks good.", which
// CRIU writes on its stdout.
TEST_F(ErrorTest, CheckPrintsOnlyItsOwnReport) {
  std::string out, err;
  cryo({"check"}, &out, &err);
  EXPECT_NE(out.find("criu check: looks good"), std::string::npos) << out;
  EXPECT_EQ(err.find("Looks good"), std::string::npos) << err;
  EXPECT_EQ(out.find("Looks good"), std::string::npos) << out;
}

// 'cryo check' says whether restores can stream (FUSE):
// yes as root; not for a user who cannot open /dev/fuse, with the fix.
TEST_F(ErrorTest, CheckSaysWhetherRestoresStream) {
  auto item = [](const std::string& out) {
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_object())
      for (const auto& i : j["checks"])
        if (i["name"] == "streamed restores") return i;
    return nlohmann::json{{"missing", out}};
  };
  std::string out;
  cryo({"check", "--json"}, &out);
  EXPECT_EQ(item(out)["status"], "pass") << out;
  // Podman, asked for its version as nobody, makes its runtime directories
  // for that user in /tmp: the test removes those it made.
  std::vector<std::string> podman_dirs;
  for (const char* d : {"/tmp/containers-user-65534", "/tmp/podman-run-65534"})
    if (!std::filesystem::exists(d)) podman_dirs.push_back(d);
  as_nobody(work_, {"--store", "/tmp", "check", "--json"}, &out, nullptr);
  for (const auto& d : podman_dirs) std::filesystem::remove_all(d);
  auto n = item(out);
  EXPECT_EQ(n["status"], "warn") << out;
  EXPECT_NE(n.value("fix", "").find("modprobe fuse"), std::string::npos) << n;
}

// The pack that holds the first chunk of the checkpoint's page image, and
// where that chunk's frame starts there, as the manifest lists them.
std::string page_chunk(const std::string& job_dir, const std::string& id, std::string* image, long* at) {
  std::string text;
  read_text(job_dir + "/checkpoints/" + id + "/manifest.json", &text);
  auto m = nlohmann::json::parse(text, nullptr, false);
  for (const auto& f : m["files"]) {
    std::string p = f["path"];
    if (p.rfind("images/pages-", 0) == 0 && !f["chunks"].empty()) {
      *image = p;
      const auto& c = f["chunks"][0];  // [sha256, size, xxh3, pack, offset, length]
      *at = c[4].get<long>();
      return job_dir + "/chunks/packs/" + c[3].get<std::string>();
    }
  }
  return "";
}

// A flipped byte in a chunk of the store is refused before the job runs
// (CRIU never gets the chunk), and the error names the image file and the
// chunk.
TEST_F(ErrorTest, CorruptImageIsRefusedBeforeRestore) {
  ASSERT_TRUE(stopped_counter("cor"));
  std::string log_before = log("cor");
  std::string image;
  long at = 0;
  std::string victim = page_chunk(store_ + "/cor", "0001", &image, &at);
  ASSERT_FALSE(victim.empty());
  flip_byte(victim, at + 20);
  std::string err;
  EXPECT_EQ(cryo({"restore", "cor", "--durable"}, nullptr, &err), 1);
  EXPECT_NE(err.find(image), std::string::npos) << err;
  EXPECT_NE(err.find(victim), std::string::npos) << err;
  EXPECT_NE(err.find("damaged"), std::string::npos) << err;
  EXPECT_EQ(log("cor"), log_before) << "a refused restore must change nothing";
  EXPECT_EQ(status("cor")["state"], "stopped");
  EXPECT_EQ(cryo({"verify", "cor"}, nullptr, &err), 1);
  EXPECT_NE(err.find(image), std::string::npos) << err;
}

// The node changed since the checkpoint: a library the job mapped is
// another build, a file it had open is gone.  'cryo restore --dry-run'
// says so, check by check, and a restore refuses with the same message
// before anything changes; put back, the job restores and goes on.
TEST_F(ErrorTest, ARestoreThatWouldFailHereIsRefusedFirst) {
  std::string lib = work_ + "/libextra.so", input = work_ + "/input.txt";
  fs::copy_file("/lib/x86_64-linux-gnu/libdl.so.2", lib);
  std::ofstream(input) << "data\n";
  pid_t run = spawn({"run", "--name", "dry", "--", "bash", "-c",
                     "exec 3<" + input + "; exec env LD_PRELOAD=" + lib + " " + prog("counter") + " " + go_file("dry")});
  ASSERT_TRUE(wait_for("dry", "tick 5"));
  ASSERT_EQ(checkpoint("dry", {"--stop"}), "0001");
  EXPECT_EQ(wait_exit(run), 75);
  auto dry_run = [&](int expect_rc) {
    std::string out;
    EXPECT_EQ(cryo({"restore", "dry", "--dry-run", "--json"}, &out), expect_rc) << out;
    auto j = nlohmann::json::parse(out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << out;
    std::map<std::string, nlohmann::json> checks;
    if (j.is_object())
      for (const auto& c : j["checks"]) checks[c.value("check", "")] = c;
    return checks;
  };
  auto checks = dry_run(0);
  for (const char* name : {"job", "key", "cpu", "kernel", "criu", "files", "mounts", "memory"})
    EXPECT_EQ(checks[name].value("result", ""), "pass") << name << ": " << checks[name].dump();

  fs::copy_file("/lib/x86_64-linux-gnu/libutil.so.1", lib, fs::copy_options::overwrite_existing);
  fs::rename(input, input + ".away");
  checks = dry_run(1);
  std::string detail = checks["files"].value("detail", "");
  EXPECT_EQ(checks["files"].value("result", ""), "fail");
  EXPECT_NE(detail.find(lib + " is another build"), std::string::npos) << detail;
  EXPECT_NE(detail.find(input + " is missing"), std::string::npos) << detail;
  EXPECT_NE(checks["files"].value("fix", "").find("put them back"), std::string::npos);
  std::string log_before = log("dry"), err;
  EXPECT_EQ(cryo({"restore", "dry"}, nullptr, &err), 1);
  EXPECT_NE(err.find(detail), std::string::npos) << err;
  EXPECT_EQ(log("dry"), log_before) << "a refused restore must change nothing";
  EXPECT_EQ(status("dry")["state"], "stopped");

  fs::copy_file("/lib/x86_64-linux-gnu/libdl.so.2", lib, fs::copy_options::overwrite_existing);
  fs::rename(input + ".away", input);
  dry_run(0);
  restore_ticking("dry", 10);
}

// Someone without the site's key changes a stopped job's store (`change`
// edits the JSON file at `rel`): the restore is refused, with `expect` in
// its error, before anything is restored.
void expect_forgery_refused(CryoTest& t, const std::string& name, const std::string& rel,
                            const std::function<void(nlohmann::json&)>& change, const std::string& expect) {
  pid_t run = t.spawn({"run", "--name", name, "--", t.prog("counter"), t.go_file(name)});
  ASSERT_TRUE(t.wait_for(name, "tick 5"));
  ASSERT_EQ(t.checkpoint(name, {"--stop"}), "0001");
  EXPECT_EQ(t.wait_exit(run), 75);
  std::string log_before = t.log(name);
  std::string path = t.store_ + "/" + name + "/" + rel, text;
  ASSERT_TRUE(read_text(path, &text));
  auto j = nlohmann::json::parse(text);
  change(j);
  std::ofstream(path) << j.dump(1);
  std::string err;
  EXPECT_EQ(t.cryo({"restore", name}, nullptr, &err), 1);
  EXPECT_NE(err.find(expect), std::string::npos) << err;
  EXPECT_NE(err.find("has been changed since cryo wrote it"), std::string::npos) << err;
  EXPECT_EQ(t.log(name), log_before) << "a refused restore must change nothing";
  EXPECT_EQ(t.status(name)["state"], "stopped");
}

// The manifest says the job had written nothing, so a restore would empty
// its log.
TEST_F(ErrorTest, ForgedCheckpointIsRefused) {
  expect_forgery_refused(*this, "fo", "checkpoints/0001/manifest.json",
                         [](nlohmann::json& m) { m["job_state"]["outputs"]["stdout"]["size"] = 0; },
                         "checkpoint 0001 of job 'fo'");
  std::string err;
  EXPECT_EQ(cryo({"verify", "fo"}, nullptr, &err), 1);
  EXPECT_NE(err.find("signature does not match"), std::string::npos) << err;
}

// The job's settings say how it is restored (here: the options given to a
// container engine).
TEST_F(ErrorTest, ForgedSettingsAreRefused) {
  expect_forgery_refused(*this, "fs", "job.json", [](nlohmann::json& c) { c["engine_options"] = {"--privileged"}; },
                         "the settings of job 'fs'");
}

// A damaged fast copy is not used: the restore reads the store instead.
TEST_F(ErrorTest, DamagedFastCopyFallsBackToTheStore) {
  ASSERT_TRUE(stopped_counter("fc"));
  std::string copy;
  for (const auto& e : fs::directory_iterator(fast_))
    if (e.path().filename().string().rfind("fc-", 0) == 0) copy = e.path().string() + "/0001/images";
  ASSERT_FALSE(copy.empty());
  for (const auto& e : fs::directory_iterator(copy))
    if (e.path().filename().string().rfind("pages-", 0) == 0) flip_byte(e.path(), 100);
  std::string events = restore_ticking("fc", 5);
  EXPECT_NE(events.find("fast copy of checkpoint 0001 was not used"), std::string::npos) << events;
  EXPECT_NE(events.find("restored from checkpoint 0001 (store)"), std::string::npos) << events;
}

// A fast tier too small for the job: the dump goes straight to the store.
TEST_F(ErrorTest, FullFastTierDumpsIntoTheStore) {
  std::map<std::string, std::string> env{{"CRYO_FAST_TIER_SIZE", "1M"}};
  pid_t run = spawn({"run", "--name", "ft", "--", prog("memhog"), go_file("ft"), "32"}, env);
  ASSERT_TRUE(wait_for("ft", "READY", 60));
  std::string out, err;
  ASSERT_EQ(cryo({"checkpoint", "ft", "--wait", "--json"}, &out, &err, env), 0) << err;
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_EQ(j["tier"], "store") << out;
  EXPECT_TRUE(j["durable"].get<bool>()) << out;
  EXPECT_FALSE(fs::exists(store_ + "/ft/staging/0001")) << "the staged dump is removed once committed";
  ::kill(job_pid("ft"), SIGKILL);
  wait_exit(run);
  pid_t restore = spawn({"restore", "ft"}, env);
  go("ft");
  EXPECT_EQ(wait_exit(restore, 60), 0);
  EXPECT_EQ(count("ft", "PASS"), 1) << log("ft");
}

// The directories the supervisor's armed CRIUs wait in (fast tier).
std::vector<std::string> armed_dirs(const std::string& fast) {
  std::vector<std::string> found;
  for (const auto& job : fs::directory_iterator(fast))
    for (const auto& e : fs::directory_iterator(job.path()))
      if (e.path().filename().string().rfind(".tmp-arm-", 0) == 0) found.push_back(e.path().string());
  return found;
}

// A checkpoint that cannot begin (the store has no room for its directory)
// fails with the reason, and the directory its armed CRIU waited in goes
// when its worker ends: only the CRIU armed for the next one keeps one.
TEST_F(ErrorTest, ACheckpointThatCannotBeginLeavesNoArmedDirectory) {
  std::string small = mount_tmpfs("size=64m,nr_inodes=64");
  fs::remove(store_);  // the empty one SetUp made
  store_ = small + "/store";
  std::map<std::string, std::string> env{{"CRYO_FAST_TIER_SIZE", "1M"}};  // the dump would go to the store
  pid_t run = spawn({"run", "--name", "nb", "--", prog("memhog"), go_file("nb"), "16"}, env);
  ASSERT_TRUE(wait_for("nb", "READY", 60));
  std::vector<std::string> armed;
  for (int i = 0; i < 200 && (armed = armed_dirs(fast_)).empty(); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(armed.size(), 1u) << "no CRIU was armed";
  std::vector<std::string> fillers;
  for (;;) {  // use up the store's inodes
    std::string f = small + "/filler-" + std::to_string(fillers.size());
    int fd = ::open(f.c_str(), O_CREAT | O_WRONLY, 0600);
    if (fd < 0) break;
    ::close(fd);
    fillers.push_back(f);
  }
  ASSERT_FALSE(fillers.empty());
  std::string err;
  EXPECT_EQ(cryo({"checkpoint", "nb", "--wait"}, nullptr, &err), 1);
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_NE(err.find("the job keeps running"), std::string::npos) << err;
  bool gone = false;
  for (int i = 0; i < 200 && !(gone = !fs::exists(armed[0])); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(gone) << armed[0] << " is still there";
  EXPECT_EQ(::kill(job_pid("nb"), 0), 0) << "the job must keep running";
  for (const auto& f : fillers) fs::remove(f);
  ASSERT_EQ(checkpoint("nb", {"--wait"}), "0001");
  go("nb");
  EXPECT_EQ(wait_exit(run), 0);
  EXPECT_EQ(count("nb", "PASS"), 1) << log("nb");
}

}  // namespace
}  // namespace cryo::test
