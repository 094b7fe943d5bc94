/* holdfiles GO DATA MAP NOTE [PIPE]: a counter that holds files the way a
 * solver holds its input.  It opens DATA for reading, maps MAP privately,
 * holds the named pipe PIPE open for reading and writing, and at every
 * tick checks that both files still start with what they held at READY.
 * When GO appears it prints the first line of DATA (read through its
 * descriptor), of MAP (through its mapping), of NOTE (opened by its
 * relative name from its working directory) and what it reads back
 * through PIPE after writing a line into it, then PASS or FAIL. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common.h"

static char data_head[64], map_head[64];
static int data_fd = -1;
static const char* map;

static void first_line(char* out, const char* from, size_t n) {
  size_t i = 0;
  while (i < n && i < 63 && from[i] && from[i] != '\n') {
    out[i] = from[i];
    i++;
  }
  out[i] = 0;
}

static int same(int unused) {
  (void)unused;
  char buf[64], line[64];
  ssize_t n = pread(data_fd, buf, sizeof buf, 0);
  if (n <= 0) return 0;
  first_line(line, buf, (size_t)n);
  if (strcmp(line, data_head) != 0) return 0;
  first_line(line, map, 64);
  return strcmp(line, map_head) == 0;
}

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  if (argc < 5) {
    fprintf(stderr, "usage: %s GO DATA MAP NOTE\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  data_fd = open(argv[2], O_RDONLY);
  int pipe_fd = argc > 5 ? open(argv[5], O_RDWR) : -1;
  if (argc > 5 && pipe_fd < 0) {
    printf("FAIL cannot open %s\n", argv[5]);
    return 1;
  }
  int m = open(argv[3], O_RDONLY);
  struct stat st;
  if (data_fd < 0 || m < 0 || fstat(m, &st) < 0 || st.st_size < 64) {
    printf("FAIL cannot open its files\n");
    return 1;
  }
  map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, m, 0);
  close(m);
  if (map == MAP_FAILED) {
    printf("FAIL cannot map %s\n", argv[3]);
    return 1;
  }
  char buf[64];
  ssize_t n = pread(data_fd, buf, sizeof buf, 0);
  first_line(data_head, buf, n > 0 ? (size_t)n : 0);
  first_line(map_head, map, 64);
  int rc = count_checking(argv[1], same, 0, "changed");
  char note[64] = "";
  int f = open(argv[4], O_RDONLY);
  if (f >= 0) {
    n = read(f, buf, sizeof buf);
    first_line(note, buf, n > 0 ? (size_t)n : 0);
    close(f);
  }
  n = pread(data_fd, buf, sizeof buf, 0);
  first_line(data_head, buf, n > 0 ? (size_t)n : 0);
  first_line(map_head, map, 64);
  printf("data: %s\nmap: %s\nnote: %s\n", data_head, map_head, note);
  if (pipe_fd >= 0) {
    char line[64] = "";
    if (write(pipe_fd, "through the pipe\n", 17) == 17 && (n = read(pipe_fd, buf, sizeof buf)) > 0)
      first_line(line, buf, (size_t)n);
    printf("pipe: %s\n", line);
  }
  return rc;
}
