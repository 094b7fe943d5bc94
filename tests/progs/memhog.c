/* memhog GO MIB: fills MIB MiB with a deterministic stream, prints its
 * checksum, then idles.  At the end it recomputes the checksum over the
 * memory and regenerates the stream to compare every word. */
#include "common.h"

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
  size_t words = mib * 1024 * 1024 / 8;
  unsigned long long* mem = malloc(words * 8);
  if (!mem) {
    printf("FAIL cannot allocate\n");
    return 1;
  }
  unsigned long long seed = 42, sum = 0;
  for (size_t i = 0; i < words; i++) {
    mem[i] = mix64(&seed);
    sum = sum * 31 + mem[i];
  }
  printf("READY checksum=%llx\n", sum);
  while (!go_file_exists(argv[1])) sleep_ms(20);
  unsigned long long again = 0, bad = 0;
  seed = 42;
  for (size_t i = 0; i < words; i++) {
    again = again * 31 + mem[i];
    if (mem[i] != mix64(&seed)) bad++;
  }
  printf("%s checksum=%llx bad_words=%llu\n", again == sum && bad == 0 ? "PASS" : "FAIL", again, bad);
  return again == sum && bad == 0 ? 0 : 1;
}
