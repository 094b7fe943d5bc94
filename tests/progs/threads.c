/* threads: 4 pthreads each add 1 to their own counter and to a shared
 * total under a mutex.  At the end the per-thread counters must add up to
 * the total, and every thread must have made progress after the restore
 * point (each prints its count at READY+). */
#include <pthread.h>

#include "common.h"

#define N 4
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long total, count[N];
static volatile int done;

static void* work(void* arg) {
  long id = (long)arg;
  while (!done) {
    pthread_mutex_lock(&lock);
    count[id]++;
    total++;
    pthread_mutex_unlock(&lock);
    sleep_ms(1);
  }
  return NULL;
}

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  pthread_t t[N];
  for (long i = 0; i < N; i++) pthread_create(&t[i], NULL, work, (void*)i);
  printf("READY\n");
  while (!go_file_exists(argv[1])) {
    pthread_mutex_lock(&lock);
    printf("total %llu\n", total);
    pthread_mutex_unlock(&lock);
    sleep_ms(100);
  }
  done = 1;
  for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
  unsigned long long s = 0;
  int all_ran = 1;
  for (int i = 0; i < N; i++) {
    s += count[i];
    if (count[i] == 0) all_ran = 0;
  }
  int ok = s == total && all_ran;
  printf("%s total=%llu\n", ok ? "PASS" : "FAIL", total);
  return ok ? 0 : 1;
}
