// A fixture for the unit tests of what acts on one job: its directory in a
// store of its own under the temporary directory, with its own signing
// key, a clock the test sets, and the job's event log to read.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "store/store.h"

namespace cryo::test {

class JobDirTest : public ::testing::Test {
 protected:
  explicit JobDirTest(std::string job) : job_(std::move(job)) {}

  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("cryo-" + job_ + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(root_);
    store::Tuning t;
    t.key_path = (root_ / "key").string();
    store::configure(t);
    dir_ = std::make_unique<store::JobDir>((root_ / "store").string(), job_);
    ASSERT_TRUE(dir_->create().ok());
  }
  void TearDown() override {
    store::configure(store::Tuning{});
    std::filesystem::remove_all(root_);
  }
  // Commits an empty checkpoint `id`, made now.
  void commit(const std::string& id) {
    store::Manifest m = store::new_manifest(job_, id, now_);
    ASSERT_TRUE(dir_->commit(m).ok());
  }
  std::string events() const {
    std::ifstream in(dir_->file(store::JobFile::events));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string job_;
  std::filesystem::path root_;
  std::unique_ptr<store::JobDir> dir_;
  double now_ = 1000;  // the fake clock
};

}  // namespace cryo::test
