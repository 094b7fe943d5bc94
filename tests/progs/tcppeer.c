/* tcppeer GO HOST PORT: keeps one TCP connection to an echo server at
 * HOST:PORT (outside its container) and, every 50 ms, sends "N\n" and
 * reads it back, printing "tick N".  A connection that breaks, or comes
 * back with other bytes, fails the test.  At GO it prints PASS or FAIL. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common.h"

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  if (argc < 4) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(argv[3]));
  if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1 || connect(s, (struct sockaddr*)&a, sizeof a)) {
    printf("FAIL cannot connect to %s:%s\n", argv[2], argv[3]);
    return 1;
  }
  printf("READY\n");
  unsigned long long n = 0;
  while (!go_file_exists(argv[1])) {
    char out[32], in[32];
    int len = snprintf(out, sizeof out, "%llu\n", ++n);
    if (write(s, out, (size_t)len) != len) {
      printf("FAIL write at %llu\n", n);
      return 1;
    }
    int got = 0;
    while (got < len) {
      ssize_t r = read(s, in + got, (size_t)(len - got));
      if (r <= 0) {
        printf("FAIL the connection broke at %llu\n", n);
        return 1;
      }
      got += (int)r;
    }
    if (memcmp(in, out, (size_t)len) != 0) {
      printf("FAIL echo mismatch at %llu\n", n);
      return 1;
    }
    printf("tick %llu\n", n);
    sleep_ms(50);
  }
  printf("PASS final=%llu\n", n);
  return 0;
}
