// Whom cryo acts for, what a process or an image holds, and the service's
// units and protocol helpers.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "base/identity.h"
#include "config/settings.h"
#include "job/images.h"
#include "service/service.h"

namespace cryo {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(IdentityTest, TextRoundTrips) {
  Identity a{1001, 1002, {1002, 27, 100}};
  auto b = Identity::parse(a.text());
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->uid, 1001u);
  EXPECT_EQ(b->gid, 1002u);
  EXPECT_EQ(b->groups, (std::vector<gid_t>{1002, 27, 100}));
  EXPECT_TRUE(Identity::parse("5:6:"));
  for (const char* bad : {"", "1", "1:2", "x:2:", "1:2:3,x", "1:2:,", "-1:2:"}) EXPECT_FALSE(Identity::parse(bad)) << bad;
}

const char* kStatus =
    "Name:\tsleep\nUmask:\t0022\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\n"
    "Groups:\t1001 27 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
    "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";

TEST(IdentityTest, AProcessHoldingOnlyHersIsHers) {
  auto p = parse_process_status(kStatus);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(privilege_beyond(*p, {1001, 1001, {1001, 27}}), "");
  EXPECT_EQ(privilege_beyond(*p, {1001, 1001, {1001}}), "it is in group 27");
}

TEST(IdentityTest, EachWayOfHoldingMoreIsNamed) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string s = kStatus;
    s.replace(s.find(from), from.size(), to);
    auto p = parse_process_status(s);
    EXPECT_TRUE(p) << s;
    return p ? privilege_beyond(*p, {1001, 1001, {1001, 27}}) : std::string("?");
  };
  EXPECT_EQ(with("Uid:\t1001\t1001", "Uid:\t1001\t0"), "its effective uid is 0");
  EXPECT_EQ(with("1001\t1001\nGid", "1001\t0\nGid"), "its file-system uid is 0");
  EXPECT_EQ(with("Gid:\t1001\t1001\t1001", "Gid:\t1001\t1001\t0"), "its saved gid is 0");
  EXPECT_EQ(with("CapEff:\t0000000000000000", "CapEff:\t0000000000200000"),
            "it holds capabilities (effective set 200000)");
  EXPECT_EQ(with("CapAmb:\t0000000000000000", "CapAmb:\t0000000000000001"), "it holds capabilities (ambient set 1)");
  EXPECT_EQ(with("CapInh:\t0000000000000000", "CapInh:\t0000000000000400"),
            "it holds capabilities (inheritable set 400)");
  // A status without its ids or capabilities is not read as "nothing more".
  EXPECT_FALSE(parse_process_status("Name:\tx\nUid:\t1\t1\t1\t1\n"));
  EXPECT_FALSE(parse_process_status("Uid:\t1\t1\t1\nGid:\t1\t1\t1\t1\n"));
}

// A core image CRIU 4.2 wrote of a process of root's (tests/unit/data).
TEST(ImagesTest, ACoreImageSaysWhatItsThreadHolds) {
  std::string image = slurp(std::string(CRYO_SOURCE_DIR) + "/tests/unit/data/core-root-sleep.img");
  auto c = job::image_creds(image, "the image");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->uid[0], 0u);
  EXPECT_EQ(c->uid[1], 0u);
  EXPECT_NE(c->cap_eff, 0u);
  EXPECT_EQ(privilege_beyond(*c, {1001, 1001, {}}), "its real uid is 0");
  // Damage is an error, never an empty set of credentials.
  EXPECT_FALSE(job::image_creds(image.substr(0, 10), "x"));
  std::string bad = image;
  bad[0] ^= 1;
  EXPECT_FALSE(job::image_creds(bad, "x"));
  std::string cut = image.substr(0, image.size() - 40);
  EXPECT_FALSE(job::image_creds(cut, "x"));
}

TEST(ServiceTest, TheVerbIsFoundPastGlobalOptions) {
  EXPECT_EQ(service::verb_of({"run", "--name", "x", "--", "restore"}), "run");
  EXPECT_EQ(service::verb_of({"--store", "/s", "restore", "x"}), "restore");
  EXPECT_EQ(service::verb_of({"--criu=/bin/true", "run"}), "run");
  EXPECT_EQ(service::verb_of({"--", "run"}), "");
  EXPECT_TRUE(service::served_verb("run"));
  EXPECT_TRUE(service::served_verb("restore"));
  EXPECT_FALSE(service::served_verb("rm"));
}

// The units sites install name the cryod that is installed and the socket
// cryo connects to by default.
TEST(ServiceTest, TheSystemdUnitsNameTheServiceAndItsSocket) {
  std::string service = slurp(std::string(CRYO_BINARY_DIR) + "/dist/cryod.service");
  std::string socket = slurp(std::string(CRYO_BINARY_DIR) + "/dist/cryod.socket");
  EXPECT_NE(service.find("\nExecStart=" + std::string(CRYO_INSTALL_SBINDIR) + "/cryod\n"), std::string::npos) << service;
  EXPECT_NE(socket.find("\nListenSequentialPacket=" + config::Settings{}.service_socket + "\n"), std::string::npos)
      << socket;
  EXPECT_NE(socket.find("\nSocketMode=0666\n"), std::string::npos) << socket;
}

}  // namespace
}  // namespace cryo
