#include "config/settings.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace cryo::config {
namespace {

namespace fs = std::filesystem;

const User kAlice{"alice", 1001, "/home/alice"};

// A configuration file of its own for each test, named by CRYO_CONFIG.
class SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cryo-settings-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  Environment with_file(const std::string& text, Environment env = {}) {
    std::string path = (dir_ / "cryo.conf").string();
    std::ofstream(path) << text;
    env["CRYO_CONFIG"] = path;
    return env;
  }
  fs::path dir_;
};

TEST_F(SettingsTest, DefaultsWithoutFileOrEnvironment) {
  auto s = load({{"HOME", "/home/alice"}}, kAlice);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->store, "/home/alice/.local/share/cryo");
  EXPECT_EQ(s->store_origin, "default");
  EXPECT_EQ(s->key, "/etc/cryo/key");
  EXPECT_EQ(s->zstd_level, -1);
  EXPECT_FALSE(s->hash_during_dump);
  EXPECT_FALSE(s->slurm.has_value());
  auto xdg = load({{"HOME", "/home/alice"}, {"XDG_DATA_HOME", "/data/alice"}}, kAlice);
  EXPECT_EQ(xdg->store, "/data/alice/cryo");
}

TEST_F(SettingsTest, FileSetsTheSiteStoreForEveryUser) {
  auto s = load(with_file("[store]\npath = \"/shared/cryo/{user}\"\nzstd_level = 3\n"
                          "[fast_tier]\npath = \"/local/ssd/cryo\"\nsize = \"25%\"\n"
                          "[agent]\ntimeout = \"2m\"\n"),
                kAlice);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->store, "/shared/cryo/alice");
  EXPECT_EQ(s->store_origin, (dir_ / "cryo.conf").string());
  EXPECT_EQ(s->config_file, (dir_ / "cryo.conf").string());
  EXPECT_EQ(s->zstd_level, 3);
  EXPECT_EQ(s->fast_tier, "/local/ssd/cryo");
  EXPECT_EQ(s->fast_tier_size, "25%");
  EXPECT_DOUBLE_EQ(s->agent_timeout, 120);
}

TEST_F(SettingsTest, EnvironmentOverridesTheFile) {
  auto s = load(with_file("[store]\npath = \"/shared/cryo/{uid}\"\nkey = \"/etc/site.key\"\n",
                          {{"CRYO_STORE", "/scratch/{user}/cryo"}, {"CRYO_KEY", "/tmp/k"}, {"CRYO_ZSTD_LEVEL", "5"}}),
                kAlice);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->store, "/scratch/alice/cryo");
  EXPECT_EQ(s->store_origin, "CRYO_STORE");
  EXPECT_EQ(s->key, "/tmp/k");
  EXPECT_EQ(s->zstd_level, 5);
}

TEST_F(SettingsTest, MistakesNameTheFileLineAndKey) {
  const std::pair<const char*, const char*> mistakes[] = {
      {"[store]\n\npth = \"/x\"\n", "cryo.conf:3: unknown key 'pth' in [store]"},
      {"[stor]\npath = \"/x\"\n", "unknown section 'stor'"},
      {"[store]\nzstd_level = \"fast\"\n", "cryo.conf:2: 'store.zstd_level' must be"},
      {"[store\n", "cryo.conf:1:"},
      {"[store]\npath = \"/shared/{group}\"\n", "'{group}'"},
  };
  for (const auto& [text, says] : mistakes) {
    auto s = load(with_file(text), kAlice);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_NE(s.error().message.find(says), std::string::npos) << s.error().message;
    EXPECT_EQ(kind_of(s.error()), ErrorKind::config) << text;
    EXPECT_FALSE(s.error().hint.empty()) << text;
  }
  auto missing = load({{"CRYO_CONFIG", (dir_ / "absent.conf").string()}}, kAlice);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("does not exist"), std::string::npos);
}

TEST_F(SettingsTest, StorePatternPlaceholders) {
  EXPECT_EQ(*expand_store_pattern("{home}/cryo-{uid}", kAlice), "/home/alice/cryo-1001");
  EXPECT_EQ(*expand_store_pattern("/plain", kAlice), "/plain");
  EXPECT_FALSE(expand_store_pattern("/x/{user", kAlice).ok());
}

TEST(SlurmEnv, AbsentOutsideSlurm) { EXPECT_FALSE(load({}, kAlice)->slurm.has_value()); }

TEST(SlurmEnv, ReadsTheBatchJob) {
  Environment env{{"SLURM_JOB_ID", "42"}, {"SLURM_RESTART_COUNT", "3"}, {"SLURM_JOB_NODELIST", "n[1-2]"}};
  auto e = load(env, kAlice)->slurm;
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->job_id, "42");
  EXPECT_EQ(e->restart_count, 3);
  EXPECT_EQ(e->nodes, "n[1-2]");
  EXPECT_TRUE(e->batch);
  env["SLURM_STEP_ID"] = "0";
  EXPECT_FALSE(load(env, kAlice)->slurm->batch);
  env.erase("SLURM_RESTART_COUNT");
  EXPECT_EQ(load(env, kAlice)->slurm->restart_count, 0);  // the first allocation has none
}

}  // namespace
}  // namespace cryo::config
