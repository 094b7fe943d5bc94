/* ticker GO [MIB]: a counter that carries memory.  It fills MIB MiB (default
 * 0) with a deterministic stream and prints its checksum with READY, then
 * prints "tick N" for N = 1, 2, ... every 50 ms, keeping a running sum,
 * until the file GO appears.  It then checks the memory word by word and
 * the sum against N, and prints PASS or FAIL.  Built statically too
 * (ticker-static), for container images with nothing but busybox. */
#include "common.h"

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  size_t words = (argc > 2 ? strtoul(argv[2], NULL, 10) : 0) * 1024 * 1024 / 8;
  unsigned long long* mem = words ? malloc(words * 8) : NULL;
  if (words && !mem) {
    printf("FAIL cannot allocate\n");
    return 1;
  }
  unsigned long long seed = 42, sum = 0;
  for (size_t i = 0; i < words; i++) {
    mem[i] = mix64(&seed);
    sum = sum * 31 + mem[i];
  }
  printf("READY checksum=%llx\n", sum);
  unsigned long long n = 0, squares = 0;
  while (!go_file_exists(argv[1])) {
    n++;
    squares += n * n;
    printf("tick %llu\n", n);
    sleep_ms(50);
  }
  unsigned long long again = 0, bad = 0;
  seed = 42;
  for (size_t i = 0; i < words; i++) {
    again = again * 31 + mem[i];
    if (mem[i] != mix64(&seed)) bad++;
  }
  int ok = again == sum && bad == 0 && squares == n * (n + 1) * (2 * n + 1) / 6;
  printf("%s checksum=%llx bad_words=%llu final=%llu\n", ok ? "PASS" : "FAIL", again, bad, n);
  return ok ? 0 : 1;
}
