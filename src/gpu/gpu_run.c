/* CUDA backend: one participant's call (prepare, run, release), and the per-op kernel table
 * (the op table's CUDA column, src/common/ops.h). */
#include <stddef.h>

#include "gpu/gpu.h"

static const jaxmg_gpu_kernel_t kKernels[JAXMG_NOPS] = {
#define JAXMG_GPU_KERNEL(OP, stem, name, flags, cpu, cuda) [JAXMG_OP_##OP] = cuda,
    JAXMG_OPS(JAXMG_GPU_KERNEL)
#undef JAXMG_GPU_KERNEL
};

int jaxmg__gpu_has_kernel(jaxmg_op_t op) { return jaxmg__op_info(op) && kKernels[op]; }

jaxmg_status_t jaxmg__gpu_prepare(const jaxmg_task_t *t, jaxmg_part_t *p, jaxmg_gpu_part_t *g,
                                  jaxmg_error_t *err) {
  jaxmg_status_t st =
      JAXMG_GPU(err, t->name, cudaEventCreateWithFlags(&g->ready, cudaEventDisableTiming));
  if (st) return st;
  p->device = g->device;
  p->stream = g->stream;
  p->ready = g->ready;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__gpu_run(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err) {
  if (!jaxmg__gpu_has_kernel(t->op)) {
    const jaxmg_op_info_t *oi = jaxmg__op_info(t->op);
    return jaxmg__seterr(err, JAXMG_EUNAVAIL, "jaxmg.%s: %s has no CUDA kernel", t->name,
                         oi ? oi->target : "this op");
  }
  return kKernels[t->op](t, g, err);
}

void jaxmg__gpu_release(jaxmg_gpu_part_t *g) {
  jaxmg_error_t ignored;
  /* An event still pending is released by the driver once it completes. */
  if (g->ready) (void)JAXMG_GPU(&ignored, "release", cudaEventDestroy(g->ready));
  if (g->done) (void)JAXMG_GPU(&ignored, "release", cudaEventDestroy(g->done));
  g->ready = g->done = NULL;
  /* XLA's allocator is stream-ordered with respect to this device's stream, where all our
   * uses of these buffers were enqueued; cuSOLVERMg's use ended at the driver's device sync. */
  jaxmg__gpu_free(g, &g->work, &g->work_bytes);
  jaxmg__gpu_free(g, &g->stage, &g->stage_bytes);
}
