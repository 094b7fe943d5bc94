// A checkpoint's restore record (job::record_from_json), the signed
// job_state a restore acts on: any JSON.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "job/record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (!j.is_discarded()) (void)cryo::job::record_from_json(j, "the restore record");
  return 0;
}
