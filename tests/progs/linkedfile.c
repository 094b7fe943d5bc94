/* linkedfile: the counter (counter.c), appending "line N" to FILE at every
 * tick; FILE has a second name, FILE.link, a hard link made at the start.
 * At the end both names must still be one file (one inode, two links)
 * holding "line 1" .. "line N" exactly: a restore that put the file back
 * as a new inode, or lost or replayed lines, fails.
 *   linkedfile GO_FILE FILE
 * Prints "tick N" every 20 ms. */
#include <fcntl.h>
#include <sys/stat.h>

#include "common.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s GO_FILE FILE\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  char link_name[4096];
  snprintf(link_name, sizeof link_name, "%s.link", argv[2]);
  unlink(link_name);
  int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0 || link(argv[2], link_name) != 0) {
    printf("FAIL: cannot create %s and %s\n", argv[2], link_name);
    return 1;
  }
  unsigned long long n = 0;
  printf("READY\n");
  while (!go_file_exists(argv[1])) {
    n++;
    dprintf(fd, "line %llu\n", n);
    printf("tick %llu\n", n);
    sleep_ms(20);
  }
  struct stat a, b;
  int ok = stat(argv[2], &a) == 0 && stat(link_name, &b) == 0 && a.st_ino == b.st_ino && a.st_nlink == 2;
  if (!ok) printf("%s and %s are no longer one file\n", argv[2], link_name);
  FILE* f = fopen(link_name, "r");
  unsigned long long expect = 1, v;
  char line[64];
  while (ok && f && fgets(line, sizeof line, f)) {
    if (sscanf(line, "line %llu", &v) != 1 || v != expect) {
      printf("%s has '%s' where 'line %llu' belongs\n", link_name, line, expect);
      ok = 0;
    }
    expect++;
  }
  if (f) fclose(f);
  ok = ok && expect == n + 1;
  printf("%s final=%llu\n", ok ? "PASS" : "FAIL", n);
  return ok ? 0 : 1;
}
