/* repl.c: placeholder until the REPL lands (see issue 2). */
#include <stdio.h>

#include "repl.h"

int sl_repl_main(sandlot *S) {
  (void)S;
  fprintf(stderr, "sandlot: the REPL is not built yet\n");
  return 1;
}
