/* The op table's rows (src/common/ops.h), indexed by op. */
#include "common/ops.h"

#include <stddef.h>

static const jaxmg_op_info_t kOps[JAXMG_NOPS] = {
#define JAXMG_OP_ROW(OP, stem_, name_, flags_, cpu, cuda)                                    \
  [JAXMG_OP_##OP] = {.op = JAXMG_OP_##OP,                                                  \
                     .stem = #stem_,                                                        \
                     .target = "jaxmg_" #stem_,                                             \
                     .name = name_,                                                         \
                     .flags = flags_},
    JAXMG_OPS(JAXMG_OP_ROW)
#undef JAXMG_OP_ROW
};

const jaxmg_op_info_t *jaxmg__op_info(jaxmg_op_t op) {
  return (int)op >= 0 && op < JAXMG_NOPS ? &kOps[op] : NULL;
}
