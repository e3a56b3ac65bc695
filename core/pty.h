/* pty.h: the pseudo-terminal proc.c gives a child (core/pty.c). Both return 0 or an errno. */
#ifndef SANDLOT_PTY_H
#define SANDLOT_PTY_H

#include <stddef.h>

/* A new pty of rows x cols: both ends close-on-exec, the slave's path in name (n bytes). */
int sl_pty_open(int rows, int cols, int *master, int *slave, char *name, size_t n);
int sl_pty_resize(int master, int rows, int cols);

#endif
