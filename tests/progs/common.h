/* Shared by the checkpoint test programs (in the manner of CRIU's ZDTM):
 * each builds its state, prints READY, keeps working until the file named
 * by its first argument appears, then checks its state and prints PASS or
 * FAIL and exits 0 or 1.  A restore in between must not be noticeable. */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline int go_file_exists(const char* path) { return access(path, F_OK) == 0; }

static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* splitmix64: a deterministic stream for memory contents */
static inline unsigned long long mix64(unsigned long long* s) {
  unsigned long long z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* The counter (counter.c) that also checks something of its own at every
 * tick: prints READY, then "tick N" every 20 ms (and `what` N when check
 * fails) until go_file appears, then PASS if the checksum matches the
 * counter and every check held.  Returns the exit status. */
static inline int count_checking(const char* go_file, int (*check)(int), int arg, const char* what) {
  unsigned long long n = 0, sum = 0, bad = 0;
  printf("READY\n");
  while (!go_file_exists(go_file)) {
    n++;
    sum += n * n;
    if (!check(arg)) {
      bad++;
      printf("%s %llu\n", what, n);
    }
    printf("tick %llu\n", n);
    sleep_ms(20);
  }
  unsigned long long expect = n * (n + 1) * (2 * n + 1) / 6;
  int ok = sum == expect && bad == 0;
  printf("%s final=%llu\n", ok ? "PASS" : "FAIL", n);
  return ok ? 0 : 1;
}

#define USAGE_GO(argc, argv)                                   \
  if ((argc) < 2) {                                            \
    fprintf(stderr, "usage: %s GO_FILE [ARGS]\n", (argv)[0]); \
    return 2;                                                  \
  }
