#include <gtest/gtest.h>

#include "base/duration.h"
#include "base/hash.h"

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

}  // namespace cryo
