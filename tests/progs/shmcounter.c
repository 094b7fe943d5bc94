/* shmcounter: the counter (counter.c), with its state in a SysV shared
 * memory segment that it creates and attaches: "tick N" every 20 ms.  At
 * the end it checks that the checksum in the segment matches the counter
 * in the segment, and removes the segment. */
#include <sys/ipc.h>
#include <sys/shm.h>

#include "common.h"

struct state {
  unsigned long long n, sum;
};

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  int id = shmget(IPC_PRIVATE, sizeof(struct state), IPC_CREAT | 0600);
  if (id < 0) return 1;
  struct state* s = shmat(id, NULL, 0);
  if (s == (void*)-1) return 1;
  printf("shm %d\nREADY\n", id);  /* for a test to remove, if it kills the job */
  while (!go_file_exists(argv[1])) {
    s->n++;
    s->sum += s->n * s->n;
    printf("tick %llu\n", s->n);
    sleep_ms(20);
  }
  unsigned long long n = s->n, expect = n * (n + 1) * (2 * n + 1) / 6;
  int ok = s->sum == expect;
  printf("%s final=%llu\n", ok ? "PASS" : "FAIL", n);
  shmdt(s);
  shmctl(id, IPC_RMID, NULL);
  return ok ? 0 : 1;
}
