/* memhog GO MIB [KIND]: fills MIB MiB with a deterministic stream, prints
 * its checksum, then idles.  At the end it recomputes the checksum over the
 * memory and regenerates the stream to compare every word.
 *
 * KIND is what the memory holds (for the benchmarks):
 *   random    incompressible words (the default)
 *   halfzero  every other 4 KiB page zero, the rest random
 *   matrix    doubles uniform in [-0.5, 0.5), as HPL's random matrix
 * While it idles, the file GO.mutate makes it rewrite a tenth of its memory
 * (one contiguous region, from another stream, as a solver's time step
 * touching part of its arrays) and print "MUTATED checksum=...". */
#include "common.h"

enum kind { RANDOM, HALFZERO, MATRIX };

static unsigned long long word(enum kind k, size_t i, unsigned long long* seed) {
  unsigned long long v = mix64(seed);
  if (k == HALFZERO && (i / 512) % 2 == 0) return 0; /* 512 words = one 4 KiB page */
  if (k == MATRIX) {
    double d = (double)(v >> 11) * (1.0 / 9007199254740992.0) - 0.5;
    memcpy(&v, &d, sizeof v);
  }
  return v;
}

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
  const char* kind_name = argc > 3 ? argv[3] : "random";
  enum kind k = strcmp(kind_name, "halfzero") == 0 ? HALFZERO : strcmp(kind_name, "matrix") == 0 ? MATRIX : RANDOM;
  size_t words = mib * 1024 * 1024 / 8;
  unsigned long long* mem = malloc(words * 8);
  if (!mem) {
    printf("FAIL cannot allocate\n");
    return 1;
  }
  /* The mutated region: [from, to), rewritten from seed 43. */
  size_t from = words / 20 * 9, to = from + words / 10;
  int mutated = 0;
  unsigned long long seed = 42, sum = 0;
  for (size_t i = 0; i < words; i++) {
    mem[i] = word(k, i, &seed);
    sum = sum * 31 + mem[i];
  }
  printf("READY checksum=%llx\n", sum);
  char mutate[4096];
  snprintf(mutate, sizeof mutate, "%s.mutate", argv[1]);
  while (!go_file_exists(argv[1])) {
    if (!mutated && go_file_exists(mutate)) {
      unsigned long long s2 = 43;
      for (size_t i = from; i < to; i++) mem[i] = word(k, i, &s2);
      sum = 0;
      for (size_t i = 0; i < words; i++) sum = sum * 31 + mem[i];
      mutated = 1;
      printf("MUTATED checksum=%llx\n", sum);
    }
    sleep_ms(20);
  }
  unsigned long long again = 0, bad = 0, s2 = 43;
  seed = 42;
  for (size_t i = 0; i < words; i++) {
    again = again * 31 + mem[i];
    unsigned long long want = word(k, i, &seed);
    if (mutated && i >= from && i < to) want = word(k, i, &s2);
    if (mem[i] != want) bad++;
  }
  printf("%s checksum=%llx bad_words=%llu\n", again == sum && bad == 0 ? "PASS" : "FAIL", again, bad);
  return again == sum && bad == 0 ? 0 : 1;
}
