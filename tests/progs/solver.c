/* solver STEPS MS [RESULT_FILE]: a deterministic computation that runs for
 * STEPS steps of about MS milliseconds.  Its state is a 16 MiB array that
 * every step updates; it prints "step N checksum X" after each step (and
 * appends the same line to RESULT_FILE, kept open), then "RESULT X" with a
 * checksum of the whole array.  An uninterrupted run and a run that was
 * checkpointed, killed and restored any number of times must print exactly
 * the same lines: a lost or replayed step changes every later checksum. */
#include "common.h"

#define WORDS (2u * 1024 * 1024) /* 16 MiB of 64-bit words */

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s STEPS MS [RESULT_FILE]\n", argv[0]);
    return 2;
  }
  long steps = atol(argv[1]), ms = atol(argv[2]);
  FILE* result = argc > 3 ? fopen(argv[3], "w") : NULL;
  if (argc > 3 && !result) {
    perror(argv[3]);
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  unsigned long long* a = malloc(WORDS * sizeof *a);
  if (!a) return 1;
  unsigned long long seed = 42;
  for (unsigned i = 0; i < WORDS; i++) a[i] = mix64(&seed);
  for (long n = 1; n <= steps; n++) {
    /* Each step rewrites 1/64 of the array from its neighbours. */
    unsigned long long sum = 0;
    unsigned start = (unsigned)((n * 32768u) % WORDS);
    for (unsigned k = 0; k < WORDS / 64; k++) {
      unsigned i = (start + k) % WORDS;
      a[i] = a[i] * 6364136223846793005ULL + a[(i + 1) % WORDS] + (unsigned long long)n;
      sum ^= a[i] + k;
    }
    printf("step %ld checksum %016llx\n", n, sum);
    if (result) {
      fprintf(result, "step %ld checksum %016llx\n", n, sum);
      fflush(result);
    }
    sleep_ms(ms);
  }
  unsigned long long total = 0;
  for (unsigned i = 0; i < WORDS; i++) total = total * 31 + a[i];
  printf("RESULT %016llx\n", total);
  if (result) {
    fprintf(result, "RESULT %016llx\n", total);
    fclose(result);
  }
  return 0;
}
