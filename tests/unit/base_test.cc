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
  EXPECT_EQ(hash_bytes(a.data(), a.size()).size(), 32u);
  EXPECT_NE(hash_bytes(a.data(), a.size()), hash_bytes(b.data(), b.size()));
}

}  // namespace cryo
