/* floor_spawn.c: the floor for local exec benchmarks. Runs `argv` N times with posix_spawn,
 * reading its stdout through a pipe and reaping it with waitpid, from W threads at once;
 * prints the elapsed seconds. What sandlot's proc.run must not add much to. A command
 * without a '/' is looked up on PATH (posix_spawnp), as sandlot does for the child. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int total, next_i;
static char **cmd;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int one(void) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  pid_t pid;
  int rc = strchr(cmd[0], '/') != NULL ? posix_spawn(&pid, cmd[0], &fa, NULL, cmd, environ)
                                        : posix_spawnp(&pid, cmd[0], &fa, NULL, cmd, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) { close(fds[0]); return -1; }
  char buf[4096];
  size_t got = 0;
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) got += (size_t)n;
  close(fds[0]);
  int st;
  waitpid(pid, &st, 0);
  return got > 0 ? 0 : -1;
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    int i = next_i++;
    pthread_mutex_unlock(&mu);
    if (i >= total) return NULL;
    if (one() != 0) { fprintf(stderr, "spawn failed\n"); exit(1); }
  }
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: floor_spawn N WORKERS cmd [args]\n"); return 2; }
  total = atoi(argv[1]);
  int workers = atoi(argv[2]);
  cmd = argv + 3;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  pthread_t th[256];
  if (workers > 256) workers = 256;
  for (int i = 0; i < workers; i++) pthread_create(&th[i], NULL, worker, NULL);
  for (int i = 0; i < workers; i++) pthread_join(th[i], NULL);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.6f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
  return 0;
}
