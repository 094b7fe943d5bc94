// CRIU's images as a restore for a user reads them before CRIU starts
// (job/images.h): the credentials of a core image, and files.img,
// mountpoints-*.img and remap-fpath.img.  The first byte picks which.
#include <cstddef>
#include <cstdint>
#include <string>

#include "job/images.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string image(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const char* const kNames[] = {"files.img", "mountpoints-1.img", "remap-fpath.img"};
  if (data[0] % 4 == 3) {
    (void)cryo::job::image_creds(image, "the image");
  } else {
    cryo::job::ImageFiles out;
    (void)cryo::job::add_image_files(image, kNames[data[0] % 4], "0001", out);
  }
  return 0;
}
