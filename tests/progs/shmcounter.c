/* shmcounter: the counter (counter.c), with its state in a SysV shared
 * memory segment that it creates and attaches, and the count kept again
 * in a SysV semaphore (raised by one at every tick): "tick N" every 20 ms.
 * At the end it checks that the checksum in the segment matches the
 * counter in the segment, and the semaphore's value the counter, and
 * removes both. */
#include <sys/ipc.h>
#include <sys/sem.h>
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
  int sem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
  if (sem < 0) return 1;
  printf("shm %d\nsem %d\nREADY\n", id, sem);  /* for a test to remove, if it kills the job */
  while (!go_file_exists(argv[1])) {
    struct sembuf up = {0, 1, 0};
    if (s->n < 32767 && semop(sem, &up, 1) != 0) return 1;  /* SEMVMX: the semaphore counts no further */
    s->n++;
    s->sum += s->n * s->n;
    printf("tick %llu\n", s->n);
    sleep_ms(20);
  }
  unsigned long long n = s->n, expect = n * (n + 1) * (2 * n + 1) / 6;
  int value = semctl(sem, 0, GETVAL);
  int ok = s->sum == expect && (unsigned long long)value == (n < 32767 ? n : 32767);
  if (value >= 0 && (unsigned long long)value != (n < 32767 ? n : 32767)) printf("semaphore %d, counter %llu\n", value, n);
  printf("%s final=%llu\n", ok ? "PASS" : "FAIL", n);
  shmdt(s);
  shmctl(id, IPC_RMID, NULL);
  semctl(sem, 0, IPC_RMID);
  return ok ? 0 : 1;
}
