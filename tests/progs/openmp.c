/* openmp: iterates x[i] = (x[i] * 3 + i) mod 2^61-1 over an array with an
 * OpenMP parallel loop and a reduction, one iteration per 10 ms.  At the
 * end it replays every iteration serially from the start and compares. */
#include <omp.h>

#include "common.h"

#define LEN 100000
#define P 2305843009213693951ULL
static unsigned long long x[LEN];

static unsigned long long step(unsigned long long* a) {
  unsigned long long sum = 0;
#pragma omp parallel for reduction(+ : sum)
  for (long i = 0; i < LEN; i++) {
    a[i] = (unsigned long long)(((__uint128_t)a[i] * 3 + (unsigned long long)i) % P);
    sum += a[i] & 0xffff;
  }
  return sum;
}

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  omp_set_num_threads(2);
  unsigned long long iters = 0, acc = 0;
  printf("READY threads=%d\n", omp_get_max_threads());
  while (!go_file_exists(argv[1])) {
    acc += step(x);
    iters++;
    printf("iter %llu\n", iters);
    sleep_ms(10);
  }
  static unsigned long long y[LEN];
  unsigned long long acc2 = 0;
  for (unsigned long long k = 0; k < iters; k++)
    for (long i = 0; i < LEN; i++) {
      y[i] = (unsigned long long)(((__uint128_t)y[i] * 3 + (unsigned long long)i) % P);
      acc2 += y[i] & 0xffff;
    }
  int ok = acc == acc2 && memcmp(x, y, sizeof x) == 0;
  printf("%s iters=%llu\n", ok ? "PASS" : "FAIL", iters);
  return ok ? 0 : 1;
}
