// The restore record: one serialisation, versioned, and every checkpoint
// written before it still read.
#include "job/record.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "base/sys.h"
#include "store/signing.h"
#include "store/store.h"

namespace cryo::job {
namespace {

namespace fs = std::filesystem;

TEST(RecordTest, RoundTrips) {
  RestoreRecord r;
  r.outputs["stdout"] = {765, "pipe:[11]"};
  r.outputs["stderr"] = {0, "pipe:[12]"};
  r.files.push_back({"/home/a/result.txt", "files/0", 42, 0644, 1000, 1000, false});
  r.tcp_established = true;
  r.container = ContainerCut{"podman", 99, "10.88.0.5"};
  auto back = record_from_json(to_json(r), "a test");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->version, kRecordVersion);
  EXPECT_EQ(back->outputs["stdout"].size, 765u);
  EXPECT_EQ(back->outputs["stderr"].pipe, "pipe:[12]");
  ASSERT_EQ(back->files.size(), 1u);
  EXPECT_EQ(back->files[0].saved_as, "files/0");
  EXPECT_EQ(back->files[0].mode, 0644u);
  EXPECT_TRUE(back->tcp_established);
  ASSERT_TRUE(back->container.has_value());
  EXPECT_EQ(back->container->log_cut, 99u);

  RestoreRecord job;
  job.coordinated = true;
  job.parts.push_back({1, "0003", "n2", "10.0.0.2:7000", "192.0.2.11/24", 123});
  job.prepare_seconds = 0.5;
  auto j = record_from_json(to_json(job), "a test");
  ASSERT_TRUE(j.ok()) << j.error().message;
  ASSERT_EQ(j->parts.size(), 1u);
  EXPECT_EQ(j->parts[0].index, 1u);
  EXPECT_EQ(j->parts[0].checkpoint, "0003");
  EXPECT_DOUBLE_EQ(j->prepare_seconds, 0.5);
}

// A checkpoint taken by cryo at b1879c5, before the record had a version
// (tests/unit/data/b1879c5: its manifest and the key that signed it),
// is read by this build: signature, manifest and record.
TEST(RecordTest, ACheckpointOfTheBuildBeforeIsRead) {
  std::string data = std::string(CRYO_SOURCE_DIR) + "/tests/unit/data/b1879c5";
  fs::path tmp = fs::temp_directory_path() / ("cryo-record-" + std::to_string(::getpid()));
  fs::create_directories(tmp / "store/old/checkpoints/0001");
  fs::copy_file(data + "/manifest.json", tmp / "store/old/checkpoints/0001/manifest.json");
  fs::copy_file(data + "/key", tmp / "key");
  ::chmod((tmp / "key").c_str(), 0600);  // git keeps no mode: the key must be its owner's alone
  store::Tuning t;
  t.key_path = (tmp / "key").string();
  store::configure(t);
  store::JobDir dir((tmp / "store").string(), "old");
  auto m = store::load_signed_manifest(dir, "0001");
  store::configure(store::Tuning{});
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->cryo_version, "0.1.0");
  EXPECT_FALSE(m->files.empty());
  auto r = restore_record(*m);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->outputs["stdout"].size, 765u);
  EXPECT_EQ(r->outputs["stdout"].pipe, "pipe:[392781]");
  EXPECT_EQ(r->outputs["stderr"].pipe, "pipe:[392782]");
  EXPECT_TRUE(r->files.empty());
  EXPECT_FALSE(r->tcp_established);
  EXPECT_FALSE(r->container.has_value());
  fs::remove_all(tmp);
}

TEST(RecordTest, ADamagedRecordIsRefusedNotThrown) {
  auto refused = [](const std::string& text) {
    auto r = record_from_json(nlohmann::json::parse(text), "checkpoint 0001");
    EXPECT_FALSE(r.ok()) << text;
    if (!r.ok()) {
      EXPECT_EQ(kind_of(r.error()), ErrorKind::corrupt) << text;
      EXPECT_NE(r.error().message.find("checkpoint 0001"), std::string::npos) << r.error().message;
    }
  };
  refused(R"([1, 2])");
  refused(R"({"outputs": []})");
  refused(R"({"outputs": {"stdout": {"size": "big"}}})");
  refused(R"({"outputs": {"stdin": {"size": 1}}})");
  refused(R"({"files": [{"path": "/a"}]})");
  refused(R"({"version": 99})");
  refused(R"({"coordinated": true})");
  // A saved copy is inside the checkpoint, and goes back to an absolute path.
  refused(R"({"files": [{"path": "/a", "saved_as": "../../etc/shadow", "size": 1, "mode": 420, "uid": 0, "gid": 0}]})");
  refused(R"({"files": [{"path": "a", "saved_as": "files/0", "size": 1, "mode": 420, "uid": 0, "gid": 0}]})");
  refused(R"({"files": [{"path": "/a", "saved_as": "", "size": 1, "mode": 420, "uid": 0, "gid": 0}]})");
  // Numbers that do not fit their field: a cast would be undefined
  // behaviour (1e300 into an int) or a huge size (-1).
  refused(R"({"version": 1e300})");
  refused(R"({"version": 1.5})");
  refused(R"({"outputs": {"stdout": {"size": -1}}})");
  refused(R"({"files": [{"path": "/a", "saved_as": "f/0", "size": 1, "mode": 420, "uid": 4294967296, "gid": 0}]})");
  refused(R"({"coordinated": true, "parts": [{"index": -3, "checkpoint": "0001"}]})");
  // A named pipe has no copy.
  EXPECT_TRUE(record_from_json(nlohmann::json::parse(
                                   R"({"files": [{"path": "/p", "saved_as": "", "size": 0, "mode": 420, "uid": 0,
                                                  "gid": 0, "fifo": true}]})"),
                               "a fifo")
                  .ok());
}

}  // namespace
}  // namespace cryo::job
