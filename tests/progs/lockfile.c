/* lockfile: the counter (counter.c), holding a POSIX lock (fcntl F_SETLK)
 * on the whole of FILE and checking at every tick, through /proc/locks,
 * that the kernel lists it for this process and this file.  A restore
 * that lost the lock, or gave it under another PID, fails the check.
 *   lockfile GO_FILE FILE
 * Prints "tick N" every 20 ms; FAIL at the end if any check failed. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common.h"

/* A line of /proc/locks: "1: POSIX  ADVISORY  WRITE 42 08:01:1234 0 EOF". */
static int listed(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return 0;
  FILE* f = fopen("/proc/locks", "r");
  if (!f) return 0;
  char line[512], want[128];
  snprintf(want, sizeof want, " %d %02x:%02x:%lu ", (int)getpid(), major(st.st_dev), minor(st.st_dev),
           (unsigned long)st.st_ino);
  int found = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "POSIX") && strstr(line, "WRITE") && strstr(line, want)) found = 1;
  fclose(f);
  return found;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s GO_FILE FILE\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int fd = open(argv[2], O_RDWR | O_CREAT, 0644);
  struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  if (fd < 0 || fcntl(fd, F_SETLK, &lk) != 0 || !listed(fd)) {
    printf("FAIL: cannot lock %s, or /proc/locks does not list the lock\n", argv[2]);
    return 1;
  }
  return count_checking(argv[1], listed, fd, "lock not listed at tick");
}
