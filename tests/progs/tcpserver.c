/* tcpserver GO PORT: listens on 127.0.0.1:PORT and counts.  Every client
 * that connects receives "count N\n" and is closed.  It also keeps one
 * established loopback connection to itself, over which it sends the
 * counter and reads it back each tick; a broken or reordered stream fails
 * the test. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common.h"

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  if (argc < 3) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(argv[2]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr*)&a, sizeof a) || listen(ls, 8)) {
    perror("bind");
    return 1;
  }
  int cl = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(cl, (struct sockaddr*)&a, sizeof a)) return 1;
  int sv = accept(ls, NULL, NULL);
  fcntl(ls, F_SETFL, O_NONBLOCK);
  unsigned long long n = 0;
  int ok = 1;
  printf("READY\n");
  while (!go_file_exists(argv[1])) {
    n++;
    unsigned long long got = 0;
    if (write(cl, &n, sizeof n) != sizeof n || read(sv, &got, sizeof got) != sizeof got || got != n) {
      ok = 0;
      break;
    }
    int c = accept(ls, NULL, NULL);
    if (c >= 0) {
      char buf[64];
      int len = snprintf(buf, sizeof buf, "count %llu\n", n);
      if (write(c, buf, (size_t)len) < 0) ok = 0;
      close(c);
    }
    printf("tick %llu\n", n);
    sleep_ms(20);
  }
  printf("%s count=%llu\n", ok ? "PASS" : "FAIL", n);
  return ok ? 0 : 1;
}
