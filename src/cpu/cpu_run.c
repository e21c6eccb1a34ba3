/* CPU backend: one participant's call, and the per-op kernel table (the op table's CPU
 * column, src/common/ops.h). */
#include <limits.h>
#include <stddef.h>

#include "cpu/cpu.h"

static const jaxmg_cpu_kernel_t kKernels[JAXMG_NOPS] = {
#define JAXMG_CPU_KERNEL(OP, stem, name, flags, cpu, cuda) [JAXMG_OP_##OP] = cpu,
    JAXMG_OPS(JAXMG_CPU_KERNEL)
#undef JAXMG_CPU_KERNEL
};

int jaxmg__cpu_has_kernel(jaxmg_op_t op) { return jaxmg__op_info(op) && kKernels[op]; }

static jaxmg_status_t make_ctx(jaxmg_cpu_ctx_t *c, const jaxmg_task_t *t, jaxmg_error_t *err) {
  jaxmg_status_t st =
      jaxmg__cpu_kernels(t->dtype, jaxmg__op_has(t->op, JAXMG_OPF_W), &c->k, t->name, err);
  if (st) return st;
  c->t = t;
  c->esz = c->k->info->size;
  c->N = t->lay.n;
  c->T = t->lay.tile;
  c->K = c->N / c->T;
  c->P = t->lay.ndev;
  if (c->N > INT_MAX) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: N = %lld exceeds LAPACK's 32-bit range",
                         t->name, (long long)c->N);
  }
  c->ld = (int)c->N;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg_cpu_run(const jaxmg_task_t *t, int32_t *info, jaxmg_error_t *err) {
  jaxmg_cpu_ctx_t c;
  if (!jaxmg__cpu_has_kernel(t->op)) {
    return jaxmg__seterr(err, JAXMG_EUNAVAIL, "jaxmg.%s: op %d has no CPU kernel", t->name,
                         (int)t->op);
  }
  jaxmg_status_t st = make_ctx(&c, t, err);
  if (st) return st;
  if (jaxmg__fault_hit(JAXMG_FAULT_ALLOC, t->rank))
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: injected allocation failure", t->name);
  if (jaxmg__fault_hit(JAXMG_FAULT_SOLVER, t->rank))
    return jaxmg__seterr(err, JAXMG_EFAULT, "jaxmg.%s: injected solver failure", t->name);
  *info = 0;
  /* The whole-matrix ops and the eigensolver (not distributed on CPU) compute on position 0
   * alone, the others while every participant does. */
  const int alone = jaxmg__op_has(t->op, JAXMG_OPF_WHOLE | JAXMG_OPF_W);
  const int threads = jaxmg__cpu_threads_begin(alone ? 1 : (int)c.P);
  st = kKernels[t->op](&c, info, err);
  jaxmg__cpu_threads_end(threads);
  return st;
}
