/* unixsock GO NAME: a counter that holds a Unix stream socket listening at
 * NAME (a path, or an abstract name if NAME starts with '@') and a
 * connection to it, and at every tick passes a byte through the
 * connection.  A restore must bring back the pair connected. */
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common.h"

static int client = -1, accepted = -1;

static int echo(int unused) {
  (void)unused;
  char c = 'x', d = 0;
  return write(client, &c, 1) == 1 && read(accepted, &d, 1) == 1 && d == 'x';
}

int main(int argc, char** argv) {
  USAGE_GO(argc, argv);
  if (argc < 3) {
    fprintf(stderr, "usage: %s GO NAME\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  size_t n = strlen(argv[2]);
  if (n == 0 || n >= sizeof a.sun_path) return 2;
  memcpy(a.sun_path, argv[2], n);
  socklen_t len = sizeof a;
  if (argv[2][0] == '@') {
    a.sun_path[0] = 0;
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  }
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0 || bind(s, (struct sockaddr*)&a, len) < 0 || listen(s, 1) < 0) {
    printf("FAIL cannot listen at %s\n", argv[2]);
    return 1;
  }
  client = socket(AF_UNIX, SOCK_STREAM, 0);
  if (client < 0 || connect(client, (struct sockaddr*)&a, len) < 0 || (accepted = accept(s, NULL, NULL)) < 0) {
    printf("FAIL cannot connect to %s\n", argv[2]);
    return 1;
  }
  return count_checking(argv[1], echo, 0, "lost");
}
