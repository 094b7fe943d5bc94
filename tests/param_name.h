// A test-name generator for suites parameterized by dotted names such as
// fault points ("flush.before_sync" becomes "flush_before_sync").
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace cryo::test {

struct DottedParamName {
  template <typename T>
  std::string operator()(const ::testing::TestParamInfo<T>& info) const {
    std::string n = info.param;
    for (auto& c : n)
      if (c == '.') c = '_';
    return n;
  }
};

}  // namespace cryo::test
