// The command line as a user meets it: help, versions, unknown verbs,
// the site's settings file, and errors that scripts can tell apart.
#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.h"

namespace cryo::test {
namespace {

namespace fs = std::filesystem;
using CliTest = CryoTest;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST_F(CliTest, HelpFitsOneScreenAndEachVerbHasItsOwn) {
  std::string out;
  ASSERT_EQ(cryo({"--help"}, &out), 0);
  EXPECT_LE(lines_of(out).size(), 45u) << out;
  // One line per verb: its summary, not its whole description.
  for (auto verb : {"run", "sbatch", "checkpoint", "restore", "ls", "status", "verify", "rm", "check", "agent"}) {
    int listed = 0;
    for (const auto& l : lines_of(out))
      if (l.rfind(std::string("  ") + verb + " ", 0) == 0) listed++;
    EXPECT_EQ(listed, 1) << verb << " in:\n" << out;
  }
  EXPECT_EQ(out.find("Inside a Slurm batch job"), std::string::npos) << "run's long description in the summary";
  // A verb's help has its own examples, not the global ones.
  ASSERT_EQ(cryo({"ls", "--help"}, &out), 0);
  EXPECT_EQ(out.find("cryo run --name sim"), std::string::npos) << out;
  ASSERT_EQ(cryo({"run", "--help"}, &out), 0);
  EXPECT_NE(out.find("Inside a Slurm batch job"), std::string::npos) << out;
  EXPECT_NE(out.find("--every DURATION"), std::string::npos) << out;
  EXPECT_EQ(out.find(" TEXT"), std::string::npos) << "an option without a value name:\n" << out;
}

TEST_F(CliTest, UnknownVerbIsNamed) {
  std::string err;
  EXPECT_EQ(cryo({"bogus"}, nullptr, &err), 2);
  EXPECT_NE(err.find("'bogus' is not a cryo verb"), std::string::npos) << err;
  EXPECT_EQ(cryo({"--store", store_, "chekpoint", "x"}, nullptr, &err), 2);
  EXPECT_NE(err.find("'chekpoint' is not a cryo verb"), std::string::npos) << err;
}

TEST_F(CliTest, VersionNamesTheBuildCriuAndFormats) {
  std::string out;
  ASSERT_EQ(cryo({"--version"}, &out), 0);
  EXPECT_NE(out.find("cryo 0."), std::string::npos) << out;
  EXPECT_NE(out.find("(revision "), std::string::npos) << out;
  EXPECT_EQ(out.find("revision unknown"), std::string::npos) << "built from a git checkout: " << out;
  EXPECT_NE(out.find("CRIU 4."), std::string::npos) << out;
  EXPECT_NE(out.find("manifest format 4"), std::string::npos) << out;
}

TEST_F(CliTest, JsonErrorsCarryTheirKind) {
  std::string out;
  EXPECT_EQ(cryo({"status", "--json", "nosuchjob"}, &out), 1);
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j.value("kind", ""), "not_found") << out;
}

// Every verb that prints has --json: verify and rm too.
TEST_F(CliTest, VerifyAndRmSpeakJson) {
  ASSERT_TRUE(stopped_counter("vj"));
  std::string out, err;
  ASSERT_EQ(cryo({"verify", "--json", "vj"}, &out, &err), 0) << err;
  auto v = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(v.is_object()) << out;
  ASSERT_EQ(v["checkpoints"].size(), 1u) << out;
  EXPECT_EQ(v["checkpoints"][0].value("id", ""), "0001") << out;
  EXPECT_TRUE(v["checkpoints"][0].value("ok", false)) << out;
  ASSERT_EQ(cryo({"rm", "--json", "vj"}, &out, &err), 0) << err;
  auto r = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(r.is_object()) << out;
  EXPECT_EQ(r.value("removed", ""), "job") << out;
  EXPECT_FALSE(fs::exists(store_ + "/vj"));
  EXPECT_EQ(cryo({"verify", "--json", "vj"}, &out, &err), 1);
  EXPECT_EQ(nlohmann::json::parse(out, nullptr, false).value("kind", ""), "not_found") << out;
}

TEST_F(CliTest, BrokenSettingsFileSaysWhereAndStopsEveryVerb) {
  std::string conf = work_ + "/cryo.conf";
  std::ofstream(conf) << "[store]\npath = \"/x\"\nzstd_levl = 3\n";
  std::string out, err;
  EXPECT_EQ(cryo({"ls"}, &out, &err, {{"CRYO_CONFIG", conf}}), 78);
  EXPECT_NE(err.find(conf + ":3: unknown key 'zstd_levl' in [store]"), std::string::npos) << err;
  // The help that explains it still works.
  EXPECT_EQ(cryo({"--help"}, &out, &err, {{"CRYO_CONFIG", conf}}), 0);
}

// The site sets the store once, as a pattern, in cryo.conf: every verb
// finds the job there, and it continues from its checkpoint.
TEST_F(CliTest, SiteSettingsFileChoosesEveryVerbsStore) {
  std::string user = ::getpwuid(::geteuid())->pw_name;
  std::string conf = work_ + "/cryo.conf";
  std::ofstream(conf) << "[store]\npath = \"" << store_ << "/site/{user}\"\n";
  // The pattern's directory for this user is this test's store, so that
  // the harness reads the job's output where it always does.
  fs::create_directories(store_ + "/site");
  fs::create_directory_symlink(store_, store_ + "/site/" + user);
  std::map<std::string, std::string> env{{"CRYO_CONFIG", conf}, {"CRYO_STORE", ""}};

  pid_t run = spawn({"run", "--name", "cf", "--", prog("counter"), go_file("cf")}, env);
  ASSERT_TRUE(wait_for("cf", "tick 5"));
  std::string out, err;
  ASSERT_EQ(cryo({"checkpoint", "cf", "--stop"}, &out, &err, env), 0) << err;
  ASSERT_EQ(wait_exit(run), 75);
  long at_checkpoint = last("cf", "tick");
  ASSERT_EQ(cryo({"ls", "--json"}, &out, &err, env), 0) << err;
  EXPECT_NE(out.find("\"cf\""), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(fs::path(::getpwuid(::geteuid())->pw_dir) / ".local/share/cryo/cf"));

  pid_t restore = spawn({"restore", "cf"}, env);
  ASSERT_TRUE(wait_for("cf", "tick " + std::to_string(at_checkpoint + 20)));
  go("cf");
  EXPECT_EQ(wait_exit(restore), 0);
  EXPECT_EQ(count("cf", "PASS"), 1) << log("cf");
  expect_sequence("cf", "tick");
}

}  // namespace
}  // namespace cryo::test
