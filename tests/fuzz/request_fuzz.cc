// cryod's reading of a caller's request (service::parse_request): any
// packet up to the service's limit, from any user.
#include <cstddef>
#include <cstdint>
#include <string>

#include "service/service.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string packet(reinterpret_cast<const char*>(data), size);
  auto r = cryo::service::parse_request(packet, 1000);
  if (r) cryo::service::verb_of({r->start().args().begin(), r->start().args().end()});
  return 0;
}
