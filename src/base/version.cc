#include "base/version.h"

#include "revision.h"

namespace cryo {

const char* release() { return CRYO_VERSION; }
const char* revision() { return CRYO_REVISION; }
std::string version() { return std::string(CRYO_VERSION) + "+" + CRYO_REVISION; }

}  // namespace cryo
