/* counter: prints "tick N" for N = 1, 2, ... every 20 ms.  Its state is the
 * counter and a running checksum of every value printed; at the end it
 * checks that the checksum matches the counter (a restore that lost or
 * replayed state would break the relation). */
#include "common.h"

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  unsigned long long n = 0, sum = 0;
  printf("READY\n");
  while (!go_file_exists(argv[1])) {
    n++;
    sum += n * n;
    printf("tick %llu\n", n);
    sleep_ms(20);
  }
  unsigned long long expect = n * (n + 1) * (2 * n + 1) / 6;
  printf("%s final=%llu\n", sum == expect ? "PASS" : "FAIL", n);
  return sum == expect ? 0 : 1;
}
