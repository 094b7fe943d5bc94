// The coordination protocol's authentication (coord/wire.h): a coordinator
// and an agent that hold the same site key talk; a message changed,
// replayed, sent back to its sender or carried into another connection is
// refused, and so is a peer with another key.  The test stands between
// the two ends and forwards (or not) each frame.
#include "coord/wire.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <future>

#include <gtest/gtest.h>

namespace cryo::coord {
namespace {

namespace fs = std::filesystem;

// One frame off fd: its 4-byte length and its bytes.
std::string take_frame(int fd) {
  uint32_t len = 0;
  EXPECT_EQ(::recv(fd, &len, 4, MSG_WAITALL), 4);
  std::string body(ntohl(len), '\0');
  EXPECT_EQ(::recv(fd, body.data(), body.size(), MSG_WAITALL), static_cast<ssize_t>(body.size()));
  uint32_t be = len;
  return std::string(reinterpret_cast<const char*>(&be), 4) + body;
}

void give_frame(int fd, const std::string& frame) {
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
}

class WireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/cryo-wire-XXXXXX";
    dir_ = ::mkdtemp(t);
    key_ = load(dir_ + "/key");
  }
  void TearDown() override { fs::remove_all(dir_); }

  static store::SigningKey load(const std::string& path) {
    auto k = store::SigningKey::load(path, true);
    EXPECT_TRUE(k.ok()) << k.error().message;
    return *k;
  }

  // A coordinator and an agent on two socket pairs; the test holds the
  // middle ends (to_coordinator_, to_agent_) and forwards the Hellos.
  struct Pair {
    Result<Channel> coordinator = make_error("not made"), agent = make_error("not made");
    UniqueFd to_coordinator, to_agent;
  };
  Pair connect(const store::SigningKey& ckey, const store::SigningKey& akey) {
    int c[2], a[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c), 0);
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
    Pair p;
    p.to_coordinator = UniqueFd(c[1]);
    p.to_agent = UniqueFd(a[1]);
    auto cf = std::async(std::launch::async, [&ckey, fd = c[0]] {
      return handshake(UniqueFd(fd), ckey, true, "", "the agent", 5);
    });
    auto af = std::async(std::launch::async, [&akey, fd = a[0]] {
      return handshake(UniqueFd(fd), akey, false, "n1", "the coordinator", 5);
    });
    give_frame(p.to_agent.get(), take_frame(p.to_coordinator.get()));
    give_frame(p.to_coordinator.get(), take_frame(p.to_agent.get()));
    p.coordinator = cf.get();
    p.agent = af.get();
    return p;
  }

  // The next message on c fails its check, and c is closed.
  static void expect_refused(Channel& c) {
    Envelope got;
    auto st = c.recv(got, 5);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, EBADMSG);
    EXPECT_FALSE(c.valid()) << "the connection stays open after a message that failed its check";
  }

  static Envelope request(uint64_t seq) {
    Envelope e;
    e.mutable_request()->set_seq(seq);
    e.mutable_request()->mutable_phase()->set_name("prepare");
    return e;
  }

  std::string dir_;
  store::SigningKey key_;
};

TEST_F(WireTest, HoldersOfTheSameKeyTalk) {
  auto p = connect(key_, key_);
  ASSERT_TRUE(p.coordinator.ok()) << p.coordinator.error().message;
  ASSERT_TRUE(p.agent.ok()) << p.agent.error().message;
  EXPECT_EQ(p.coordinator->peer().node(), "n1");
  for (uint64_t seq : {1, 2}) {
    ASSERT_TRUE(p.coordinator->send(request(seq)));
    give_frame(p.to_agent.get(), take_frame(p.to_coordinator.get()));
    Envelope got;
    ASSERT_TRUE(p.agent->recv(got, 5));
    EXPECT_EQ(got.request().seq(), seq);
  }
  Envelope reply;
  reply.mutable_reply()->set_seq(2);
  reply.mutable_reply()->set_ok(true);
  ASSERT_TRUE(p.agent->send(reply));
  give_frame(p.to_coordinator.get(), take_frame(p.to_agent.get()));
  Envelope got;
  ASSERT_TRUE(p.coordinator->recv(got, 5));
  EXPECT_TRUE(got.reply().ok());
}

TEST_F(WireTest, AChangedMessageIsRefused) {
  auto p = connect(key_, key_);
  ASSERT_TRUE(p.agent.ok());
  ASSERT_TRUE(p.coordinator->send(request(1)));
  std::string frame = take_frame(p.to_coordinator.get());
  frame[6] ^= 1;
  give_frame(p.to_agent.get(), frame);
  expect_refused(*p.agent);
}

TEST_F(WireTest, AReplayedMessageIsRefused) {
  auto p = connect(key_, key_);
  ASSERT_TRUE(p.agent.ok());
  ASSERT_TRUE(p.coordinator->send(request(1)));
  std::string frame = take_frame(p.to_coordinator.get());
  give_frame(p.to_agent.get(), frame);
  give_frame(p.to_agent.get(), frame);
  Envelope got;
  ASSERT_TRUE(p.agent->recv(got, 5));
  expect_refused(*p.agent);
}

TEST_F(WireTest, AMessageSentBackToItsSenderIsRefused) {
  auto p = connect(key_, key_);
  ASSERT_TRUE(p.coordinator.ok());
  ASSERT_TRUE(p.coordinator->send(request(1)));
  give_frame(p.to_coordinator.get(), take_frame(p.to_coordinator.get()));
  expect_refused(*p.coordinator);
}

TEST_F(WireTest, AMessageFromAnotherConnectionIsRefused) {
  auto first = connect(key_, key_);
  ASSERT_TRUE(first.coordinator.ok());
  ASSERT_TRUE(first.coordinator->send(request(1)));
  std::string frame = take_frame(first.to_coordinator.get());
  auto second = connect(key_, key_);
  ASSERT_TRUE(second.agent.ok());
  give_frame(second.to_agent.get(), frame);
  expect_refused(*second.agent);
}

TEST_F(WireTest, APeerWithAnotherKeyIsRefusedAndBothKeysAreNamed) {
  auto other = load(dir_ + "/other-key");
  auto p = connect(key_, other);
  ASSERT_FALSE(p.coordinator.ok());
  ASSERT_FALSE(p.agent.ok());
  EXPECT_NE(p.coordinator.error().message.find("the agent holds key " + other.id()), std::string::npos)
      << p.coordinator.error().message;
  EXPECT_NE(p.coordinator.error().message.find(key_.id()), std::string::npos) << p.coordinator.error().message;
  EXPECT_NE(p.coordinator.error().hint.find("copy"), std::string::npos) << p.coordinator.error().hint;
  EXPECT_NE(p.agent.error().message.find("the coordinator holds key " + key_.id()), std::string::npos)
      << p.agent.error().message;
}

}  // namespace
}  // namespace cryo::coord
