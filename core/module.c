/* module.c: linked into the lazily loaded modules (http.so, ssh.so) so the host binary can
 * check they were built with it (lazy.c). */
#include <stdio.h>

#include "internal.h"

SL_SHARED const char *sl_module_abi(void);

SL_SHARED const char *sl_module_abi(void) {
  static char abi[128];
  if (abi[0] == '\0') sl_abi_string(abi, sizeof(abi));
  return abi;
}
