/* procself: the counter (counter.c), checking at every tick that /proc is
 * its own: it keeps /proc/self/status open and rereads it, and reads
 * /proc/<getpid()>/stat and /proc/self; each must name the PID getpid()
 * returns.  After a restore with the host's /proc, the open file would not
 * come back (CRIU recorded the host's PID), or would name another process.
 * Prints "tick N" every 20 ms; FAIL at the end if any check failed. */
#include <fcntl.h>

#include "common.h"

static int own_proc(int status_fd) {
  char buf[4096], want[64], path[64];
  pid_t me = getpid();
  ssize_t n = pread(status_fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  snprintf(want, sizeof want, "\nPid:\t%d\n", (int)me);
  if (!strstr(buf, want)) return 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)me);
  FILE* f = fopen(path, "r");
  int pid = -1;
  if (!f) return 0;
  int ok = fscanf(f, "%d", &pid) == 1 && pid == me;
  fclose(f);
  n = readlink("/proc/self", buf, sizeof buf - 1);
  if (n <= 0) return 0;
  buf[n] = 0;
  return ok && atoi(buf) == me;
}

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  int status_fd = open("/proc/self/status", O_RDONLY);
  if (status_fd < 0 || !own_proc(status_fd)) {
    printf("FAIL: /proc is not this process's own\n");
    return 1;
  }
  return count_checking(argv[1], own_proc, status_fd, "wrong /proc at tick");
}
