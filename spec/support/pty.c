/* pty.c: runs a command on a pseudo-terminal for spec/repl_spec.lua. Usage:
 *   pty SECONDS command [args...]
 * Bytes read on stdin go to the terminal (so "\x03" is a Ctrl-C and "\x04" a Ctrl-D); what the
 * command writes to the terminal comes out on stdout. Exits with the command's exit code
 * (128 + signal if it was killed), or 124 after killing it when SECONDS pass. Built by the
 * spec with `cc -o pty pty.c -lutil`. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int write_all(int fd, const char *p, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= w;
  }
  return 0;
}

static int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pty SECONDS command [args...]\n");
    return 2;
  }
  double limit = atof(argv[1]);
  struct winsize ws = {.ws_row = 24, .ws_col = 100};
  int master;
  pid_t pid = forkpty(&master, NULL, NULL, &ws);
  if (pid < 0) {
    perror("pty: forkpty");
    return 2;
  }
  if (pid == 0) {
    execvp(argv[2], argv + 2);
    perror("pty: exec");
    _exit(127);
  }
  signal(SIGPIPE, SIG_IGN);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  int in_open = 1;
  char buf[4096];
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    double spent = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
    if (spent >= limit) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      fprintf(stderr, "pty: timed out after %gs\n", limit);
      return 124;
    }
    struct pollfd fds[2] = {{.fd = master, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    int n = poll(fds, in_open ? 2 : 1, (int)((limit - spent) * 1000) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(master, buf, sizeof(buf));
      if (r <= 0 && !(r < 0 && errno == EINTR)) break;    /* EIO: the last slave fd closed */
      if (r > 0 && write_all(1, buf, r) != 0) break;
    }
    if (in_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = read(0, buf, sizeof(buf));
      if (r <= 0 && !(r < 0 && errno == EINTR)) in_open = 0;  /* keep the terminal open */
      else if (r > 0 && write_all(master, buf, r) != 0) in_open = 0;
    }
  }
  int status = 0;
  for (int i = 0; waitpid(pid, &status, WNOHANG) == 0; i++) {   /* the tty closed first */
    if (i >= 500) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(10000);
  }
  close(master);
  return exit_code(status);
}
