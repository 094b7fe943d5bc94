// A checkpoint's manifest as cryo reads it (store::manifest_from_json),
// before its signature is checked: any text in a store.
#include <cstddef>
#include <cstdint>
#include <string>

#include "store/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)cryo::store::manifest_from_json(text, "the manifest");
  return 0;
}
