/*
 * Fork storm for the cnlink benchmark: one worker per core, each forking children that exit at once
 * (or exec /bin/true with -x). Prints its pid, waits for a line on stdin, storms, then prints the number
 * of process events the storm made: root exit + 2 per worker + 2 (3 with exec) per child.
 *
 *   storm CHILDREN [-x] [-p PAUSE_US]    -p: one child at a time, PAUSE_US apart (for latency)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void burst(long n, int do_exec, long pause_us) {
  for (long i = 0; i < n; i++) {
    pid_t c = fork();
    if (c == 0) {
      if (do_exec) execl("/bin/true", "true", (char *)NULL);
      _exit(0);
    }
    if (c < 0) { perror("fork"); _exit(1); }
    if (pause_us) { waitpid(c, NULL, 0); usleep(pause_us); }
    else if (i % 64 == 63) while (waitpid(-1, NULL, WNOHANG) > 0) {}
  }
  while (wait(NULL) > 0) {}
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: storm CHILDREN [-x] [-p PAUSE_US]\n"); return 2; }
  long children = atol(argv[1]);
  int do_exec = 0;
  long pause_us = 0;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "-x")) do_exec = 1;
    else if (!strcmp(argv[i], "-p") && i + 1 < argc) pause_us = atol(argv[++i]);
  }
  long workers = pause_us ? 1 : sysconf(_SC_NPROCESSORS_ONLN);
  printf("%d\n", getpid());
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 1;
  for (long w = 0; w < workers; w++) {
    long share = children / workers + (w < children % workers ? 1 : 0);
    pid_t p = fork();
    if (p == 0) { burst(share, do_exec, pause_us); _exit(0); }
  }
  while (wait(NULL) > 0) {}
  printf("%ld\n", 1 + 2 * workers + children * (do_exec ? 3 : 2));
  fflush(stdout);
  return 0;
}
