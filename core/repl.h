/* repl.h: the interactive loop of the sandlot host (repl.c). */
#ifndef SANDLOT_REPL_H
#define SANDLOT_REPL_H

#include "sandlot.h"

/* Runs the REPL on the terminal until Ctrl-D; returns the process exit code. */
int sl_repl_main(sandlot *S);

#endif
