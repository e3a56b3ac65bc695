/* bytecode.h: the Lua library compiled at build time (core/bytecode_gen.lua), served by the
 * searcher in core/bytecode.c. */
#ifndef SANDLOT_BYTECODE_H
#define SANDLOT_BYTECODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *name;          /* module name, "sandlot.http"; the table is sorted by it */
  size_t src_size;           /* the source it was compiled from: its size and FNV-1a 64 */
  uint64_t src_hash;
  const char *code;          /* string.dump(chunk, false) with the chunk name "@" */
  size_t code_size;
} SlBytecode;

extern const SlBytecode sl_bytecode[];
extern const size_t sl_bytecode_count;

#endif
