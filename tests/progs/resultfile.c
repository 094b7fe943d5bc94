/* resultfile GO FILE: appends "line N" to its own result file FILE every
 * 20 ms, keeping it open.  At the end it reads FILE back and checks that it
 * holds exactly lines 1..N, in order, each once. */
#include <fcntl.h>

#include "common.h"

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  if (argc < 3) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  FILE* f = fopen(argv[2], "w");
  if (!f) return 1;
  unsigned long long n = 0;
  printf("READY\n");
  while (!go_file_exists(argv[1])) {
    fprintf(f, "line %llu\n", ++n);
    fflush(f);
    printf("wrote %llu\n", n);
    sleep_ms(20);
  }
  fclose(f);
  FILE* r = fopen(argv[2], "r");
  unsigned long long k = 0, v;
  int ok = 1;
  while (fscanf(r, "line %llu\n", &v) == 1)
    if (v != ++k) ok = 0;
  if (k != n) ok = 0;
  printf("%s lines=%llu\n", ok ? "PASS" : "FAIL", k);
  return ok ? 0 : 1;
}
