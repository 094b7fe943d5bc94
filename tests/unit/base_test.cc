#include <algorithm>

#include <gtest/gtest.h>

#include "base/buffer.h"
#include "base/duration.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/sys.h"

namespace cryo {

TEST(Duration, ParsesUnits) {
  EXPECT_DOUBLE_EQ(*parse_duration("90"), 90);
  EXPECT_DOUBLE_EQ(*parse_duration("30s"), 30);
  EXPECT_DOUBLE_EQ(*parse_duration("10m"), 600);
  EXPECT_DOUBLE_EQ(*parse_duration("1h30m"), 5400);
  EXPECT_DOUBLE_EQ(*parse_duration("2d"), 172800);
}

TEST(Duration, RejectsNonsenseWithAHint) {
  for (const char* bad : {"", "m", "10x", "-5", "0"}) {
    auto r = parse_duration(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().hint.find("30s"), std::string::npos);
  }
}

TEST(Hash, DiffersOnOneBit) {
  std::string a(4096, 'x'), b = a;
  b[100] ^= 1;
  EXPECT_EQ(xxh3_bytes(a.data(), a.size()).size(), 32u);
  EXPECT_NE(xxh3_bytes(a.data(), a.size()), xxh3_bytes(b.data(), b.size()));
}

TEST(Hash, Sha256AndHmacMatchTheirStandards) {
  // FIPS 180-2's "abc", and RFC 4231's test case 2.
  EXPECT_EQ(sha256_bytes("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hmac_sha256("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_TRUE(equal_in_constant_time("abc", "abc"));
  EXPECT_FALSE(equal_in_constant_time("abc", "abd"));
  EXPECT_FALSE(equal_in_constant_time("abc", "ab"));
}

TEST(Hash, PieceHasherMatchesTheWholeData) {
  std::string data(3 * 4096 + 17, '\0');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 7919 % 251);
  PieceHasher h;
  for (size_t off = 0; off < data.size(); off += 1000) h.update(data.data() + off, std::min<size_t>(1000, data.size() - off));
  auto d = h.digest();
  EXPECT_EQ(d.sha256, sha256_bytes(data.data(), data.size()));
  EXPECT_EQ(d.xxh3, xxh3_bytes(data.data(), data.size()));
  // It starts over after a digest.
  h.update("abc", 3);
  EXPECT_EQ(h.digest().sha256, sha256_bytes("abc", 3));
}

// The mount that holds a path: the deepest mount point at or above it,
// the last one mounted where two share a point.
TEST(JsonInt, TakesOnlyAWholeNumberThatFits) {
  using nlohmann::json;
  EXPECT_EQ(json_int<int>(json::parse("-7")), -7);
  EXPECT_EQ(json_int<uint64_t>(json::parse("18446744073709551615")), UINT64_MAX);
  EXPECT_EQ(json_int<uint32_t>(json::parse("4294967295")), UINT32_MAX);
  EXPECT_EQ(json_int(json::parse(R"({"a": 3})"), "a", 0), 3);
  EXPECT_EQ(json_int(json::parse(R"({"b": 3})"), "a", 9), 9);
  EXPECT_THROW(json_int<int>(json::parse("1e300")), json::type_error);
  EXPECT_THROW(json_int<int>(json::parse("2.0")), json::type_error);
  EXPECT_THROW(json_int<int>(json::parse("\"2\"")), json::type_error);
  EXPECT_THROW(json_int<int>(json::parse("true")), json::type_error);
  EXPECT_THROW(json_int<uint64_t>(json::parse("-1")), json::out_of_range);
  EXPECT_THROW(json_int<uint32_t>(json::parse("4294967296")), json::out_of_range);
  EXPECT_THROW(json_int<int>(json::parse("9223372036854775808")), json::out_of_range);
}

TEST(ScratchBuffer, GrowsAlignedAndKeepsItsMemoryWhenSmallerWillDo) {
  ScratchBuffer b;
  EXPECT_EQ(b.capacity(), 0u);
  char* p = b.get(100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 << 20), 0u);  // whole huge pages, and fit for O_DIRECT
  EXPECT_EQ(b.capacity(), size_t{2} << 20);
  std::fill(p, p + b.capacity(), 'x');
  EXPECT_EQ(b.get(4096), p);  // no new memory for a smaller request
  char* q = b.get((5 << 20) + 1);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(b.capacity(), size_t{6} << 20);
  std::fill(q, q + b.capacity(), 'y');
  ScratchBuffer moved = std::move(b);
  EXPECT_EQ(b.capacity(), 0u);
  EXPECT_EQ(moved.get(1), q);
  EXPECT_EQ(q[(6 << 20) - 1], 'y');
}

TEST(Mounts, FindsTheMountThatHoldsAPath) {
  std::string info =
      "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "25 22 0:21 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=100k\n"
      "26 25 0:22 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw,size=24684100k\n"
      "90 26 0:40 / /dev/shm/cryo rw,relatime - tmpfs cryo-fast rw,size=12342052k,huge=within_size\n"
      "91 22 0:41 / /mnt/with\\040space rw - tmpfs a rw\n"
      "92 22 0:42 / /mnt/with\\040space rw - tmpfs b rw,huge=always\n";
  auto m = sys::mount_from_mountinfo(info, "/dev/shm/cryo/job-1/0001");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->point, "/dev/shm/cryo");
  EXPECT_EQ(m->fstype, "tmpfs");
  EXPECT_EQ(m->options, "rw,size=12342052k,huge=within_size");
  // /dev/shm/cryo2 is not below /dev/shm/cryo.
  EXPECT_EQ(sys::mount_from_mountinfo(info, "/dev/shm/cryo2")->point, "/dev/shm");
  EXPECT_EQ(sys::mount_from_mountinfo(info, "/var/tmp")->fstype, "ext4");
  EXPECT_EQ(sys::mount_from_mountinfo(info, "/mnt/with space/x")->options, "rw,huge=always");
  EXPECT_FALSE(sys::mount_from_mountinfo("", "/x").ok());
}

TEST(ErrorKindTest, SetWhereMadeElseFromErrno) {
  EXPECT_EQ(kind_of(make_error(ErrorKind::corrupt, "x")), ErrorKind::corrupt);
  EXPECT_EQ(kind_of(sys_error("open", ENOENT)), ErrorKind::not_found);
  EXPECT_EQ(kind_of(sys_error("write", ENOSPC)), ErrorKind::no_space);
  EXPECT_EQ(kind_of(sys_error("write", EDQUOT)), ErrorKind::no_space);
  EXPECT_EQ(kind_of(sys_error("open", EACCES)), ErrorKind::denied);
  EXPECT_EQ(kind_of(make_error("plain")), ErrorKind::unknown);
  // A kind given survives context and hints.
  Error e = sys_error("open", ENOENT).of_kind(ErrorKind::corrupt).context("reading").with_hint("h");
  EXPECT_EQ(kind_of(e), ErrorKind::corrupt);
  EXPECT_STREQ(kind_name(ErrorKind::no_space), "no_space");
  EXPECT_STREQ(kind_name(ErrorKind::unknown), "error");
}

}  // namespace cryo
