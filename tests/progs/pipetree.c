/* pipetree: a parent and two generations of children pass a token around
 * a ring of pipes, each adding 1.  At the end the parent checks the token
 * equals 3 * rounds (each of the 3 processes added once per round). */
#include <signal.h>
#include <sys/wait.h>

#include "common.h"

static void relay(int in, int out) {
  unsigned long long v;
  while (read(in, &v, sizeof v) == sizeof v) {
    v++;
    if (write(out, &v, sizeof v) != sizeof v) break;
  }
  _exit(0);
}

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  int a[2], b[2], c[2];
  if (pipe(a) || pipe(b) || pipe(c)) return 1;
  pid_t k1 = fork();
  if (k1 == 0) { /* child: a -> b, and its own child: b -> c */
    pid_t k2 = fork();
    if (k2 == 0) {
      close(a[0]), close(a[1]), close(b[1]), close(c[0]);
      relay(b[0], c[1]);
    }
    close(a[1]), close(b[0]), close(c[0]), close(c[1]);
    relay(a[0], b[1]);
  }
  /* only the ends it uses, so that closing a[1] ends the ring by EOF */
  close(a[0]), close(b[0]), close(b[1]), close(c[1]);
  unsigned long long v = 0, rounds = 0;
  printf("READY\n");
  while (!go_file_exists(argv[1])) {
    v++;
    if (write(a[1], &v, sizeof v) != sizeof v || read(c[0], &v, sizeof v) != sizeof v) {
      printf("FAIL pipe broken\n");
      return 1;
    }
    rounds++;
    printf("round %llu token %llu\n", rounds, v);
    sleep_ms(20);
  }
  close(a[1]);
  int ok = v == 3 * rounds;
  while (wait(NULL) > 0) {
  }
  printf("%s rounds=%llu\n", ok ? "PASS" : "FAIL", rounds);
  return ok ? 0 : 1;
}
