// Which cryo this is: its release and the git revision it was built from.
// Every manifest records it (store/manifest.h, cryo_version), so that
// checkpoints taken by different builds can be told apart.
#pragma once

#include <string>

namespace cryo {

// "0.1.0" (the project's version in CMakeLists.txt).
const char* release();
// The source tree's git revision, e.g. "b1879c5a1f2e" or "b1879c5a1f2e-dirty";
// "unknown" when built outside a git checkout.
const char* revision();
// "0.1.0+b1879c5a1f2e": release and revision, as manifests record it.
std::string version();

}  // namespace cryo
