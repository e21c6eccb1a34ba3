/* The FFI layer (src/ffi/dispatch.c, src/common/ffi_util.c) driven through the exported CPU
 * handlers with hand-built call frames and a fake XLA_FFI_Api. Only fields that exist under
 * the same name in every supported jaxlib header are touched by name. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu.h"
#include "ffi/dispatch.h"
#include "jaxmg_test.h"
#include "xla/ffi/api/c_api.h"

/* The handlers (src/ffi/entry_cpu.c). */
XLA_FFI_Error *jaxmg_ffi_potrf_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_potrs_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_solve_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_potri_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_syevd_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_syevd_n_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_potrs_whole_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_syevd_whole_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_syevd_n_whole_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_getrs_cpu(XLA_FFI_CallFrame *f);

typedef XLA_FFI_Error *(*handler_t)(XLA_FFI_CallFrame *f);

/* Every op with the operands and results python/jaxmg passes it, written out independently
 * of the op table (src/common/ops.h), which test_ffi_op_table holds to it: handler
 * jaxmg_ffi_<stem>_cpu; the op's name in messages; b: operand b and result x; w: result w;
 * a_out: result a (aliased); whole: single-engine op; factor / vectors / lu: the math; cpu:
 * the CPU library has a kernel (the general solve runs on GPUs only, through cuSOLVERMg). */
typedef struct {
  const char *stem, *name;
  handler_t fn;
  int b, w, a_out, whole, factor, vectors, lu, cpu;
} op_spec_t;

static const op_spec_t kHandlers[] = {
    /* stem           name          handler                    b  w  a  wh f  v  lu cpu */
    {"potrf", "cho_factor", jaxmg_ffi_potrf_cpu, 0, 0, 1, 0, 1, 0, 0, 1},
    {"potrs", "potrs", jaxmg_ffi_potrs_cpu, 1, 0, 1, 0, 1, 0, 0, 1},
    {"solve", "cho_solve", jaxmg_ffi_solve_cpu, 1, 0, 0, 0, 0, 0, 0, 1},
    {"potri", "potri", jaxmg_ffi_potri_cpu, 0, 0, 1, 0, 1, 0, 0, 1},
    {"syevd", "syevd", jaxmg_ffi_syevd_cpu, 0, 1, 1, 0, 0, 1, 0, 1},
    {"syevd_n", "syevd", jaxmg_ffi_syevd_n_cpu, 0, 1, 1, 0, 0, 0, 0, 1},
    {"potrs_whole", "potrs", jaxmg_ffi_potrs_whole_cpu, 1, 0, 0, 1, 1, 0, 0, 1},
    {"syevd_whole", "syevd", jaxmg_ffi_syevd_whole_cpu, 0, 1, 1, 1, 0, 1, 0, 1},
    {"syevd_n_whole", "syevd", jaxmg_ffi_syevd_n_whole_cpu, 0, 1, 1, 1, 0, 0, 0, 1},
    {"getrs", "solve", jaxmg_ffi_getrs_cpu, 1, 0, 1, 0, 0, 0, 1, 0},
};
enum { kNumHandlers = sizeof kHandlers / sizeof kHandlers[0] };

static const op_spec_t *spec_of(const char *stem) {
  for (size_t i = 0; i < kNumHandlers; i++)
    if (strcmp(kHandlers[i].stem, stem) == 0) return &kHandlers[i];
  return NULL;
}

/* ---- the fake runtime --------------------------------------------------------------------- */
/* Opaque in the header: the runtime (here, the test) defines them. */
struct XLA_FFI_Error {
  XLA_FFI_Error_Code code;
  char msg[640];
};
/* What XLA keeps per custom call of an executable (its instantiation state). */
typedef struct {
  void *state;
  int64_t type_id;
} fake_thunk_t;

struct XLA_FFI_ExecutionContext {
  int64_t run_id;
  int refuse_run_id;
  fake_thunk_t *thunk; /* NULL: a call without instantiation state */
};

static atomic_int g_live_errors;

/* A future the handler may return (asynchronous calls): completed from any thread. */
struct XLA_FFI_Future {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  XLA_FFI_Error *error; /* owned once completed with an error */
};
static atomic_int g_live_futures;

static XLA_FFI_Error *fake_error_create(XLA_FFI_Error_Create_Args *args) {
  XLA_FFI_Error *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->code = args->errc;
  snprintf(e->msg, sizeof e->msg, "%s", args->message ? args->message : "");
  atomic_fetch_add(&g_live_errors, 1);
  return e;
}

static void fake_error_destroy(XLA_FFI_Error_Destroy_Args *args) {
  if (!args->error) return;
  atomic_fetch_sub(&g_live_errors, 1);
  free(args->error);
}

static XLA_FFI_Error *fake_run_id(XLA_FFI_RunId_Get_Args *args) {
  if (args->ctx->refuse_run_id) {
    XLA_FFI_Error_Create_Args c;
    memset(&c, 0, sizeof c);
    c.errc = XLA_FFI_Error_Code_UNIMPLEMENTED;
    c.message = "no run id here";
    return fake_error_create(&c);
  }
  args->run_id = args->ctx->run_id;
  return NULL;
}

#if XLA_FFI_API_MAJOR == 0 && XLA_FFI_API_MINOR >= 3 /* used with the State API below */
static XLA_FFI_Error *fake_future_create(XLA_FFI_Future_Create_Args *args) {
  XLA_FFI_Future *fu = calloc(1, sizeof *fu);
  pthread_mutex_init(&fu->mu, NULL);
  pthread_cond_init(&fu->cv, NULL);
  atomic_fetch_add(&g_live_futures, 1);
  args->future = fu;
  return NULL;
}

static void future_complete(XLA_FFI_Future *fu, XLA_FFI_Error *error) {
  pthread_mutex_lock(&fu->mu);
  fu->done++;
  fu->error = error;
  pthread_cond_broadcast(&fu->cv);
  pthread_mutex_unlock(&fu->mu);
}

static XLA_FFI_Error *fake_future_available(XLA_FFI_Future_SetAvailable_Args *args) {
  future_complete(args->future, NULL);
  return NULL;
}

static XLA_FFI_Error *fake_future_error(XLA_FFI_Future_SetError_Args *args) {
  future_complete(args->future, args->error);
  return NULL;
}
#endif

/* Waits for the future, destroys it as XLA would and returns what it carried (as
 * take_error: the code, the message copied). Checks it was completed exactly once. */
static int take_future(XLA_FFI_Future *fu, char *msg, size_t len);

static XLA_FFI_Api make_api(void) {
  XLA_FFI_Api api;
  memset(&api, 0, sizeof api);
  api.struct_size = sizeof api;
  api.api_version.major_version = XLA_FFI_API_MAJOR;
  api.api_version.minor_version = XLA_FFI_API_MINOR;
  api.XLA_FFI_Error_Create = fake_error_create;
  api.XLA_FFI_Error_Destroy = fake_error_destroy;
  api.XLA_FFI_RunId_Get = fake_run_id;
  return api;
}

static XLA_FFI_Api g_api;

/* Returns the error's code and copies its message, then destroys it as XLA would. */
static int take_error(XLA_FFI_Error *e, char *msg, size_t len) {
  if (!e) {
    if (msg) msg[0] = '\0';
    return XLA_FFI_Error_Code_OK;
  }
  int code = e->code;
  if (msg) snprintf(msg, len, "%s", e->msg);
  XLA_FFI_Error_Destroy_Args d;
  memset(&d, 0, sizeof d);
  d.error = e;
  fake_error_destroy(&d);
  return code;
}

static int take_future(XLA_FFI_Future *fu, char *msg, size_t len) {
  pthread_mutex_lock(&fu->mu);
  while (!fu->done) pthread_cond_wait(&fu->cv, &fu->mu);
  int done = fu->done;
  XLA_FFI_Error *e = fu->error;
  pthread_mutex_unlock(&fu->mu);
  JT_EQ(done, 1);
  pthread_cond_destroy(&fu->cv);
  pthread_mutex_destroy(&fu->mu);
  free(fu);
  atomic_fetch_sub(&g_live_futures, 1);
  return take_error(e, msg, len);
}

/* ---- call frames -------------------------------------------------------------------------- */
enum { kMax = 8 };
typedef union {
  int64_t i64;
  int32_t i32;
  float f32;
} attr_value_t;

typedef struct {
  XLA_FFI_CallFrame f;
  XLA_FFI_ExecutionContext ctx;
  XLA_FFI_ArgType arg_types[kMax];
  void *args[kMax];
  XLA_FFI_Buffer arg_buf[kMax];
  int64_t arg_dims[kMax][2];
  XLA_FFI_RetType ret_types[kMax];
  void *rets[kMax];
  XLA_FFI_Buffer ret_buf[kMax];
  int64_t ret_dims[kMax][2];
  XLA_FFI_AttrType attr_types[kMax];
  XLA_FFI_ByteSpan name_span[kMax];
  XLA_FFI_ByteSpan *names[kMax];
  XLA_FFI_Scalar scalars[kMax];
  void *attrs[kMax];
  attr_value_t attr_val[kMax];
  XLA_FFI_Array arrays[kMax];
} frame_t;

/* The frame points into itself: build it in place and never copy it. */
static void frame_init(frame_t *fr, int64_t run_id) {
  memset(fr, 0, sizeof *fr);
  fr->ctx.run_id = run_id;
  fr->f.struct_size = sizeof fr->f;
  fr->f.api = &g_api;
  fr->f.ctx = &fr->ctx;
  fr->f.stage = XLA_FFI_ExecutionStage_EXECUTE;
  fr->f.args.struct_size = sizeof fr->f.args;
  fr->f.args.types = fr->arg_types;
  fr->f.args.args = fr->args;
  fr->f.rets.struct_size = sizeof fr->f.rets;
  fr->f.rets.types = fr->ret_types;
  fr->f.rets.rets = fr->rets;
  fr->f.attrs.struct_size = sizeof fr->f.attrs;
  fr->f.attrs.types = fr->attr_types;
  fr->f.attrs.names = fr->names;
  fr->f.attrs.attrs = fr->attrs;
}

static void set_buffer(XLA_FFI_Buffer *b, int64_t *dims, XLA_FFI_DataType dt, void *data,
                       int64_t rank, int64_t d0, int64_t d1) {
  b->struct_size = sizeof *b;
  b->dtype = dt;
  b->data = data;
  b->rank = rank;
  b->dims = dims;
  dims[0] = d0;
  dims[1] = d1;
}

static void add_arg(frame_t *fr, XLA_FFI_DataType dt, void *data, int64_t rank, int64_t d0,
                    int64_t d1) {
  int64_t i = fr->f.args.size++;
  fr->arg_types[i] = XLA_FFI_ArgType_BUFFER;
  set_buffer(&fr->arg_buf[i], fr->arg_dims[i], dt, data, rank, d0, d1);
  fr->args[i] = &fr->arg_buf[i];
}

static void add_ret(frame_t *fr, XLA_FFI_DataType dt, void *data, int64_t rank, int64_t d0,
                    int64_t d1) {
  int64_t i = fr->f.rets.size++;
  fr->ret_types[i] = XLA_FFI_RetType_BUFFER;
  set_buffer(&fr->ret_buf[i], fr->ret_dims[i], dt, data, rank, d0, d1);
  fr->rets[i] = &fr->ret_buf[i];
}

static void add_attr(frame_t *fr, const char *name, int64_t value) {
  int64_t i = fr->f.attrs.size++;
  fr->attr_types[i] = XLA_FFI_AttrType_SCALAR;
  fr->name_span[i].ptr = name;
  fr->name_span[i].len = strlen(name);
  fr->names[i] = &fr->name_span[i];
  fr->attr_val[i].i64 = value;
  fr->scalars[i].dtype = XLA_FFI_DataType_S64;
  fr->scalars[i].value = &fr->attr_val[i];
  fr->attrs[i] = &fr->scalars[i];
}

/* An array attribute of `size` elements of dtype dt at data. */
static void add_attr_array(frame_t *fr, const char *name, XLA_FFI_DataType dt, void *data,
                           size_t size) {
  int64_t i = fr->f.attrs.size++;
  fr->attr_types[i] = XLA_FFI_AttrType_ARRAY;
  fr->name_span[i].ptr = name;
  fr->name_span[i].len = strlen(name);
  fr->names[i] = &fr->name_span[i];
  fr->arrays[i].dtype = dt;
  fr->arrays[i].size = size;
  fr->arrays[i].data = data;
  fr->attrs[i] = &fr->arrays[i];
}

static XLA_FFI_DataType xla_dtype(jaxmg_dtype_t dt) {
  switch (dt) {
    case JAXMG_F32: return XLA_FFI_DataType_F32;
    case JAXMG_F64: return XLA_FFI_DataType_F64;
    case JAXMG_C64: return XLA_FFI_DataType_C64;
    case JAXMG_C128: return XLA_FFI_DataType_C128;
  }
  return XLA_FFI_DataType_INVALID;
}

static XLA_FFI_DataType xla_real_dtype(jaxmg_dtype_t dt) {
  return (dt == JAXMG_F32 || dt == JAXMG_C64) ? XLA_FFI_DataType_F32 : XLA_FFI_DataType_F64;
}

/* Buffers of one participant. */
typedef struct {
  jaxmg_dtype_t dt;
  int64_t n, nloc, nrhs;
  void *a, *b, *x, *w;
  int32_t ids[2];
  int32_t info;
} bufs_t;

static int bufs_alloc(bufs_t *u, jaxmg_dtype_t dt, int64_t n, int64_t nloc, int64_t nrhs) {
  size_t esz = jaxmg_dtype_size(dt);
  memset(u, 0, sizeof *u);
  u->dt = dt, u->n = n, u->nloc = nloc, u->nrhs = nrhs;
  u->a = calloc((size_t)(nloc * n), esz);
  u->b = calloc((size_t)(nrhs * n + 1), esz);
  u->x = calloc((size_t)(nrhs * n + 1), esz);
  u->w = calloc((size_t)n, esz);
  u->info = -99;
  return JT_CHECK(u->a && u->b && u->x && u->w);
}

static void bufs_free(bufs_t *u) {
  free(u->a);
  free(u->b);
  free(u->x);
  free(u->w);
}

/* The frame of `op` (a stem) as python/jaxmg builds it (operand table in
 * src/ffi/dispatch.c). */
static void op_frame(frame_t *fr, const char *op, bufs_t *u, int64_t run_id, int64_t tile,
                     int64_t nparts, int64_t site, int64_t timeout_ms) {
  XLA_FFI_DataType dt = xla_dtype(u->dt);
  const op_spec_t *sp = spec_of(op);
  frame_init(fr, run_id);
  add_arg(fr, dt, u->a, 2, u->nloc, u->n);
  if (sp->b) add_arg(fr, dt, u->b, 2, u->nrhs, u->n);
  add_arg(fr, XLA_FFI_DataType_S32, u->ids, 1, 2, 0);
  if (sp->a_out) add_ret(fr, dt, u->a, 2, u->nloc, u->n);
  if (sp->b) add_ret(fr, dt, u->x, 2, u->nrhs, u->n);
  if (sp->w) add_ret(fr, xla_real_dtype(u->dt), u->w, 1, u->n, 0);
  add_ret(fr, XLA_FFI_DataType_S32, &u->info, 1, 1, 0);
  add_attr(fr, "tile", tile);
  add_attr(fr, "nparts", nparts);
  add_attr(fr, "site", site);
  add_attr(fr, "timeout_ms", timeout_ms);
}

static handler_t handler_of(const char *op) { return spec_of(op)->fn; }

static int64_t next_run_id(void) {
  static int64_t id = 2000000;
  return ++id;
}

/* ---- metadata and stages ------------------------------------------------------------------ */
void test_ffi_metadata(void) {
  g_api = make_api();
  XLA_FFI_Metadata_Extension ext, other;
  union {
    max_align_t align;
    unsigned char bytes[512];
  } store;
  _Static_assert(sizeof *((XLA_FFI_Metadata_Extension *)0)->metadata <= sizeof store.bytes,
                 "metadata storage too small");
  for (int chained = 0; chained < 2; chained++) {
    for (size_t h = 0; h < kNumHandlers; h++) {
      jt_context("handler %s, chained %d", kHandlers[h].stem, chained);
      memset(&ext, 0, sizeof ext);
      memset(&other, 0, sizeof other);
      memset(&store, 0, sizeof store);
      ext.extension_base.type = XLA_FFI_Extension_Metadata;
      ext.extension_base.next = NULL;
      ext.metadata = (void *)store.bytes;
      ext.metadata->api_version.major_version = 9;
      ext.metadata->api_version.minor_version = 9;
      ext.metadata->traits = 0x7;
      /* An extension of another kind first: the handler must walk the chain. */
      other.extension_base.type = 77;
      other.extension_base.next = (void *)&ext;
      XLA_FFI_CallFrame f;
      memset(&f, 0, sizeof f);
      f.struct_size = sizeof f;
      f.api = &g_api;
      f.ctx = NULL; /* XLA passes no context with the metadata query */
      f.extension_start = chained ? (void *)&other : (void *)&ext;
      JT_CHECK(kHandlers[h].fn(&f) == NULL);
      JT_EQ(ext.metadata->api_version.major_version, 0);
      JT_EQ(ext.metadata->api_version.minor_version, 1);
      JT_EQ(ext.metadata->traits, 0);
    }
  }
  jt_context("%s", "");
  JT_EQ(atomic_load(&g_live_errors), 0);
}

void test_ffi_stages(void) {
  g_api = make_api();
  static const XLA_FFI_ExecutionStage stages[] = {XLA_FFI_ExecutionStage_INSTANTIATE,
                                                  XLA_FFI_ExecutionStage_PREPARE,
                                                  XLA_FFI_ExecutionStage_INITIALIZE};
  int64_t live = jaxmg_live_sessions();
  for (size_t h = 0; h < kNumHandlers; h++) {
    for (size_t s = 0; s < sizeof stages / sizeof stages[0]; s++) {
      /* An empty frame: the handler must not look at it outside EXECUTE. */
      frame_t fr;
      frame_init(&fr, next_run_id());
      fr.f.stage = stages[s];
      jt_context("handler %s, stage %d", kHandlers[h].stem, (int)stages[s]);
      JT_CHECK(kHandlers[h].fn(&fr.f) == NULL);
    }
  }
  jt_context("%s", "");
  /* The same empty frame at EXECUTE is rejected (it is decoded). */
  frame_t fr;
  frame_init(&fr, next_run_id());
  char msg[640];
  JT_EQ(take_error(jaxmg_ffi_potrs_cpu(&fr.f), msg, sizeof msg),
        XLA_FFI_Error_Code_INVALID_ARGUMENT);
  JT_STR_CONTAINS(msg, "jaxmg.potrs: missing attribute 'tile'");
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* ---- validation --------------------------------------------------------------------------- */
typedef struct {
  const char *op;
  const char *what;                  /* description for failure messages */
  void (*mutate)(frame_t *fr, bufs_t *u);
  const char *expect[3];             /* substrings of the message */
} bad_case_t;

/* One mutation of a valid frame (or of the buffers it points to). */
#define MUTATOR(name, stmt)                           \
  static void name(frame_t *fr, bufs_t *u) {          \
    (void)fr, (void)u;                                \
    stmt;                                             \
  }
MUTATOR(m_a_rank, fr->arg_buf[0].rank = 1)
MUTATOR(m_a_rows, fr->arg_dims[0][0] = 3)
MUTATOR(m_a_s32, fr->arg_buf[0].dtype = XLA_FFI_DataType_S32)
MUTATOR(m_a_f16, fr->arg_buf[0].dtype = XLA_FFI_DataType_F16)
MUTATOR(m_b_dtype, fr->arg_buf[1].dtype = XLA_FFI_DataType_F32)
MUTATOR(m_b_rank, fr->arg_buf[1].rank = 1)
MUTATOR(m_b_cols, fr->arg_dims[1][1] = 9)
MUTATOR(m_b_notbuf, fr->arg_types[1] = (XLA_FFI_ArgType)2)
MUTATOR(m_tile3, fr->attr_val[0].i64 = 3)
MUTATOR(m_tile0, fr->attr_val[0].i64 = 0)
MUTATOR(m_nparts0, fr->attr_val[1].i64 = 0)
MUTATOR(m_nparts3, fr->attr_val[1].i64 = 3)
MUTATOR(m_nparts_huge, fr->attr_val[1].i64 = INT64_C(1) << 62) /* nloc * nparts overflows */
MUTATOR(m_tile_huge, fr->attr_val[0].i64 = INT64_MAX)
/* An empty shard (N = 0) with shapes that agree everywhere. */
MUTATOR(m_empty, fr->arg_dims[0][0] = fr->arg_dims[0][1] = fr->arg_dims[1][1] = 0;
        fr->ret_dims[0][0] = fr->ret_dims[0][1] = fr->ret_dims[1][1] = 0)
MUTATOR(m_no_site, fr->name_span[2].ptr = "sitf")
MUTATOR(m_no_attrs, fr->f.attrs.size = 3)
MUTATOR(m_tile_f32, fr->scalars[0].dtype = XLA_FFI_DataType_F32; fr->attr_val[0].f32 = 4.0f)
MUTATOR(m_nparts_str, fr->attr_types[1] = XLA_FFI_AttrType_STRING)
/* A narrower integer type is accepted; the value read is 3, which does not divide 4. */
MUTATOR(m_tile_s32, fr->scalars[0].dtype = XLA_FFI_DataType_S32; fr->attr_val[0].i32 = 3)
MUTATOR(m_timeout0, fr->attr_val[3].i64 = 0)
MUTATOR(m_ra_dtype, fr->ret_buf[0].dtype = XLA_FFI_DataType_C128)
MUTATOR(m_ids_s64, fr->arg_buf[2].dtype = XLA_FFI_DataType_S64)
MUTATOR(m_ids_len, fr->arg_dims[2][0] = 3)
MUTATOR(m_ids_rank, fr->arg_buf[2].rank = 2)
MUTATOR(m_ids_pos, u->ids[1] = 2)
MUTATOR(m_ids_neg, u->ids[1] = -1)
MUTATOR(m_x_rows, fr->ret_dims[1][0] = 3)
MUTATOR(m_info_f32, fr->ret_buf[2].dtype = XLA_FFI_DataType_F32)
MUTATOR(m_info_len, fr->ret_dims[2][0] = 2)
MUTATOR(m_few_args, fr->f.args.size = 2)
MUTATOR(m_few_rets, fr->f.rets.size = 2)
MUTATOR(m_w_dtype, fr->ret_buf[1].dtype = XLA_FFI_DataType_F32)
MUTATOR(m_w_len, fr->ret_dims[1][0] = 7)
MUTATOR(m_ids1_s64, fr->arg_buf[1].dtype = XLA_FFI_DataType_S64) /* potrf: ids is operand 2 */
MUTATOR(m_x0_rows, fr->ret_dims[0][0] = 3)                       /* solve: x is result 1 */
MUTATOR(m_potri_info, fr->ret_buf[1].dtype = XLA_FFI_DataType_S64)
#undef MUTATOR

/* The frames below describe one participant of 2 (nloc 4, N 8, tile 2) in float64, with 2
 * right-hand sides; syevd uses complex128 so that 'w' must be float64. */
static const bad_case_t kBad[] = {
    {"potrs", "a rank", m_a_rank, {"jaxmg.potrs:", "'a' must be a matrix (rank 2), got rank 1"}},
    {"potrs", "a rows", m_a_rows,
     {"jaxmg.potrs:", "the shard of 'a' must have N / 2 rows", "got 3 rows"}},
    {"potrs", "a int32", m_a_s32,
     {"jaxmg.potrs:", "'a' must be float32, float64, complex64 or complex128", "got int32"}},
    {"potrs", "a float16", m_a_f16, {"jaxmg.potrs:", "'a'", "got float16"}},
    {"potrs", "b dtype", m_b_dtype, {"jaxmg.potrs:", "'b' must be float64, got float32"}},
    {"potrs", "b rank", m_b_rank, {"jaxmg.potrs:", "'b' must have rank 2, got rank 1"}},
    {"potrs", "b columns", m_b_cols, {"jaxmg.potrs:", "'b' must have shape (2, 8), got (2, 9)"}},
    {"potrs", "b not a buffer", m_b_notbuf, {"jaxmg.potrs:", "'b' must be a buffer"}},
    {"potrs", "tile 3", m_tile3, {"jaxmg.potrs:", "tile size 3", "divide the 4 rows"}},
    {"potrs", "tile 0", m_tile0, {"jaxmg.potrs:", "tile size 0 must be positive"}},
    {"potrs", "tile int32", m_tile_s32, {"jaxmg.potrs:", "tile size 3"}},
    {"potrs", "nparts 0", m_nparts0, {"jaxmg.potrs:", "the shard of 'a'"}},
    {"potrs", "nparts 3", m_nparts3, {"jaxmg.potrs:", "the shard of 'a' must have N / 3 rows"}},
    {"potrs", "nparts 2^62", m_nparts_huge, {"jaxmg.potrs:", "the shard of 'a'"}},
    {"potrs", "tile 2^63-1", m_tile_huge, {"jaxmg.potrs:", "tile size 9223372036854775807"}},
    {"potrs", "empty", m_empty, {"jaxmg.potrs:", "'a' must have at least one row", "(0, 0)"}},
    {"potrs", "missing site", m_no_site, {"jaxmg.potrs:", "missing attribute 'site'"}},
    {"potrs", "missing timeout", m_no_attrs, {"jaxmg.potrs:", "missing attribute 'timeout_ms'"}},
    {"potrs", "tile float", m_tile_f32,
     {"jaxmg.potrs:", "attribute 'tile' must be an integer, got float32"}},
    {"potrs", "nparts string", m_nparts_str,
     {"jaxmg.potrs:", "attribute 'nparts' must be an integer scalar"}},
    {"potrs", "timeout 0", m_timeout0, {"jaxmg.potrs:", "timeout_ms must be positive, got 0"}},
    {"potrs", "result a dtype", m_ra_dtype,
     {"jaxmg.potrs:", "'a (result)' must be float64, got complex128"}},
    {"potrs", "ids int64", m_ids_s64, {"jaxmg.potrs:", "'ids' must be int32, got int64"}},
    {"potrs", "ids length", m_ids_len, {"jaxmg.potrs:", "'ids' must have shape (2,), got (3,)"}},
    {"potrs", "ids rank", m_ids_rank, {"jaxmg.potrs:", "'ids' must have rank 1, got rank 2"}},
    {"potrs", "position 2 of 2", m_ids_pos, {"jaxmg.potrs:", "mesh position 2 outside [0, 2)"}},
    {"potrs", "position -1", m_ids_neg, {"jaxmg.potrs:", "mesh position -1 outside [0, 2)"}},
    {"potrs", "x rows", m_x_rows, {"jaxmg.potrs:", "'x' must have shape (2, 8), got (3, 8)"}},
    {"potrs", "info dtype", m_info_f32, {"jaxmg.potrs:", "'info' must be int32, got float32"}},
    {"potrs", "info length", m_info_len, {"jaxmg.potrs:", "'info' must have shape (1,), got (2,)"}},
    {"potrs", "few operands", m_few_args,
     {"jaxmg.potrs:", "expected operand number 3, got only 2 operands"}},
    {"potrs", "few results", m_few_rets,
     {"jaxmg.potrs:", "expected result number 3, got only 2 results"}},
    {"syevd", "w dtype", m_w_dtype, {"jaxmg.syevd:", "'w' must be float64, got float32"}},
    {"syevd", "w length", m_w_len, {"jaxmg.syevd:", "'w' must have shape (8,), got (7,)"}},
    {"syevd_n", "a rank", m_a_rank, {"jaxmg.syevd:", "'a' must be a matrix"}},
    {"potri", "info dtype", m_potri_info, {"jaxmg.potri:", "'info' must be int32, got int64"}},
    {"potrf", "ids int64", m_ids1_s64, {"jaxmg.cho_factor:", "'ids' must be int32"}},
    {"solve", "x rows", m_x0_rows, {"jaxmg.cho_solve:", "'x' must have shape (2, 8), got (3, 8)"}},
};

void test_ffi_validation(void) {
  g_api = make_api();
  int64_t live = jaxmg_live_sessions();
  for (size_t i = 0; i < sizeof kBad / sizeof kBad[0]; i++) {
    const bad_case_t *c = &kBad[i];
    int evd = strncmp(c->op, "syevd", 5) == 0;
    bufs_t u;
    if (!bufs_alloc(&u, evd ? JAXMG_C128 : JAXMG_F64, 8, 4, 2)) return;
    u.ids[0] = 0, u.ids[1] = 1;
    frame_t fr;
    /* A short deadline: if a check were missing, the lone participant would time out
     * quickly (and fail this test) instead of waiting for its absent peer. */
    op_frame(&fr, c->op, &u, next_run_id(), 2, 2, 1, 300);
    c->mutate(&fr, &u);
    char msg[640];
    jt_context("%s: %s", c->op, c->what);
    /* The check happens before the rendezvous: a lone participant of 2 returns at once. */
    JT_EQ(take_error(handler_of(c->op)(&fr.f), msg, sizeof msg),
          XLA_FFI_Error_Code_INVALID_ARGUMENT);
    for (int k = 0; k < 3 && c->expect[k]; k++) JT_STR_CONTAINS(msg, c->expect[k]);
    JT_EQ(u.info, -99); /* no output written */
    bufs_free(&u);
  }
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* The run id call only exists in newer runtimes: guarded by the API struct size. */
void test_ffi_no_run_id(void) {
  int64_t live = jaxmg_live_sessions();
  char msg[640];
  bufs_t u;
  if (!bufs_alloc(&u, JAXMG_F64, 4, 4, 1)) return;
  frame_t fr;
  g_api = make_api();
  g_api.struct_size = offsetof(XLA_FFI_Api, XLA_FFI_RunId_Get);
  op_frame(&fr, "potrs", &u, next_run_id(), 2, 1, 1, 60000);
  JT_EQ(take_error(jaxmg_ffi_potrs_cpu(&fr.f), msg, sizeof msg), XLA_FFI_Error_Code_UNAVAILABLE);
  JT_STR_CONTAINS(msg, "jaxmg.potrs");
  JT_STR_CONTAINS(msg, "no run id");
  /* A runtime that has the call but refuses: its error is destroyed, ours returned. */
  g_api = make_api();
  op_frame(&fr, "potrs", &u, next_run_id(), 2, 1, 1, 60000);
  fr.ctx.refuse_run_id = 1;
  JT_EQ(take_error(jaxmg_ffi_potrs_cpu(&fr.f), msg, sizeof msg), XLA_FFI_Error_Code_UNAVAILABLE);
  JT_STR_CONTAINS(msg, "did not provide a run id");
  JT_EQ(u.info, -99);
  bufs_free(&u);
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* ---- device memory through XLA --------------------------------------------------------------- */
/* What XLA's XLA_FFI_DeviceMemory_Allocate does (xla/ffi/ffi_api.cc): alignments above 16
 * (or not a power of two) are refused; here also blocks above g_fake_mem_limit bytes. */
static size_t g_fake_mem_limit;
static atomic_int g_fake_mem_live;

#if XLA_FFI_API_MAJOR == 0 && XLA_FFI_API_MINOR <= 3 /* GetMessage: headers up to API 0.3 */
static void fake_error_message(XLA_FFI_Error_GetMessage_Args *args) {
  args->message = args->error->msg;
}
#endif

static XLA_FFI_Error *fake_mem_allocate(XLA_FFI_DeviceMemory_Allocate_Args *args) {
  char msg[64];
  XLA_FFI_Error_Create_Args c;
  memset(&c, 0, sizeof c);
  c.message = msg;
  if (args->alignment == 0 || (args->alignment & (args->alignment - 1)) || args->alignment > 16) {
    snprintf(msg, sizeof msg, "Unsupported alignment: %zu", args->alignment);
    c.errc = XLA_FFI_Error_Code_INVALID_ARGUMENT;
    return fake_error_create(&c);
  }
  if (args->size > g_fake_mem_limit) {
    snprintf(msg, sizeof msg, "Out of memory allocating %zu bytes", args->size);
    c.errc = XLA_FFI_Error_Code_RESOURCE_EXHAUSTED;
    return fake_error_create(&c);
  }
  args->data = malloc(args->size);
  atomic_fetch_add(&g_fake_mem_live, 1);
  return NULL;
}

static XLA_FFI_Error *fake_mem_free(XLA_FFI_DeviceMemory_Free_Args *args) {
  free(args->data);
  atomic_fetch_sub(&g_fake_mem_live, 1);
  return NULL;
}

/* jaxmg__ffi_alloc asks for an alignment XLA accepts, and a refusal comes back with XLA's
 * message (or a reason of its own where the runtime has no allocation or no messages). */
void test_ffi_alloc(void) {
  frame_t fr;
  char why[200];
  g_api = make_api();
  frame_init(&fr, next_run_id());
  /* A runtime whose FFI has no device memory calls. */
  JT_CHECK(jaxmg__ffi_alloc(&fr.f, 64, why, sizeof why) == NULL);
  JT_STR_CONTAINS(why, "allocates no device memory");
  g_api.XLA_FFI_DeviceMemory_Allocate = fake_mem_allocate;
  g_api.XLA_FFI_DeviceMemory_Free = fake_mem_free;
  g_fake_mem_limit = 1024;
  void *p = jaxmg__ffi_alloc(&fr.f, 1024, why, sizeof why);
  JT_CHECK(p != NULL); /* XLA would refuse alignment 256 ("Unsupported alignment") */
  JT_EQ((int64_t)strlen(why), 0);
  jaxmg__ffi_free(&fr.f, p, 1024);
  JT_EQ(atomic_load(&g_fake_mem_live), 0);
  /* Refused: without XLA_FFI_Error_GetMessage, then with it. */
  JT_CHECK(jaxmg__ffi_alloc(&fr.f, 4096, why, sizeof why) == NULL);
  JT_STR_CONTAINS(why, "no reason given");
#if XLA_FFI_API_MAJOR == 0 && XLA_FFI_API_MINOR <= 3
  g_api.XLA_FFI_Error_GetMessage = fake_error_message;
  JT_CHECK(jaxmg__ffi_alloc(&fr.f, 4096, why, sizeof why) == NULL);
  JT_STR_CONTAINS(why, "Out of memory allocating 4096 bytes");
#endif
  JT_CHECK(jaxmg__ffi_alloc(&fr.f, 4096, NULL, 0) == NULL); /* no room for a reason */
  JT_EQ(atomic_load(&g_fake_mem_live), 0);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* ---- the op table -------------------------------------------------------------------------- */
/* Every row of the op table (src/common/ops.h) says what the operand table of dispatch.c says:
 * one row per handler, stems and targets unique, flags as written out in kHandlers. */
void test_ffi_op_table(void) {
  int seen[kNumHandlers] = {0};
  JT_EQ(JAXMG_NOPS, kNumHandlers);
  for (int op = 0; op < JAXMG_NOPS; op++) {
    const jaxmg_op_info_t *oi = jaxmg__op_info((jaxmg_op_t)op);
    if (!JT_CHECK(oi != NULL)) continue;
    jt_context("op %d (%s)", op, oi->stem);
    JT_EQ(oi->op, op);
    const op_spec_t *sp = spec_of(oi->stem);
    if (!JT_CHECK(sp != NULL)) continue;
    seen[sp - kHandlers]++;
    char target[64];
    snprintf(target, sizeof target, "jaxmg_%s", sp->stem);
    JT_CHECK(strcmp(oi->target, target) == 0);
    JT_STR_CONTAINS(oi->target, target);
    JT_CHECK(strcmp(oi->name, sp->name) == 0);
    JT_STR_CONTAINS(oi->name, sp->name);
    JT_EQ(!!(oi->flags & JAXMG_OPF_B), sp->b);
    JT_EQ(!!(oi->flags & JAXMG_OPF_W), sp->w);
    JT_EQ(!!(oi->flags & JAXMG_OPF_A_OUT), sp->a_out);
    JT_EQ(!!(oi->flags & JAXMG_OPF_WHOLE), sp->whole);
    JT_EQ(!!(oi->flags & JAXMG_OPF_FACTOR), sp->factor);
    JT_EQ(!!(oi->flags & JAXMG_OPF_VECTORS), sp->vectors);
    JT_EQ(!!(oi->flags & JAXMG_OPF_LU), sp->lu);
    /* Eigenvectors come with eigenvalues; a solve without factoring reads a factor. */
    JT_CHECK(!(oi->flags & JAXMG_OPF_VECTORS) || (oi->flags & JAXMG_OPF_W));
    JT_EQ(jaxmg__op_has((jaxmg_op_t)op, oi->flags), oi->flags != 0);
    JT_EQ(jaxmg__cpu_has_kernel((jaxmg_op_t)op), sp->cpu);
  }
  jt_context("%s", "");
  for (size_t i = 0; i < kNumHandlers; i++) {
    jt_context("handler %s", kHandlers[i].stem);
    JT_EQ(seen[i], 1);
  }
  jt_context("%s", "");
  JT_CHECK(jaxmg__op_info(JAXMG_NOPS) == NULL);
  JT_CHECK(jaxmg__op_info((jaxmg_op_t)-1) == NULL);
  JT_CHECK(!jaxmg__op_has(JAXMG_NOPS, ~0u));
  JT_CHECK(!jaxmg__cpu_has_kernel(JAXMG_NOPS));
}

/* The CPU library registers every op: jaxmg_ffi_targets() lists the nine targets in table
 * order, each served by the handler jaxmg_ffi_<stem>_cpu, then the device-local ops (those
 * of every platform, then the CPU's own). */
void test_ffi_targets(void) {
  char want[512] = "";
  for (size_t i = 0; i < kNumHandlers; i++) {
    if (!kHandlers[i].cpu) continue; /* ops without a CPU kernel are not listed */
    if (want[0]) strcat(want, ",");
    strcat(want, "jaxmg_");
    strcat(want, kHandlers[i].stem);
  }
  strcat(want, ",jaxmg_syevx,jaxmg_syev2s");
  const char *got = jaxmg_ffi_targets();
  if (!JT_CHECK(got != NULL)) return;
  JT_CHECK(strcmp(got, want) == 0);
  JT_STR_CONTAINS(got, want);
  JT_STR_CONTAINS(want, got);
}

/* The device-local subset eigensolver through its handler: eigenpairs [lo, hi) of a
 * diagonal-plus-coupling matrix against the full reference solve; bad frames refused with
 * INVALID_ARGUMENT before anything runs. */
XLA_FFI_Error *jaxmg_ffi_syevx_cpu(XLA_FFI_CallFrame *f);

static void syevx_frame(frame_t *fr, XLA_FFI_DataType dt, XLA_FFI_DataType rt, void *a,
                        void *w, void *z, int32_t *info, int64_t n, int64_t lo, int64_t hi,
                        int vectors) {
  frame_init(fr, next_run_id());
  add_arg(fr, dt, a, 2, n, n);
  add_ret(fr, dt, a, 2, n, n);
  add_ret(fr, rt, w, 1, hi - lo, 0);
  add_ret(fr, dt, z, 2, vectors ? hi - lo : 0, n);
  add_ret(fr, XLA_FFI_DataType_S32, info, 0, 0, 0);
  add_attr(fr, "lo", lo);
  add_attr(fr, "hi", hi);
  add_attr(fr, "vectors", vectors);
  add_attr(fr, "parts", 1);
}

void test_ffi_syevx(void) {
  g_api = make_api();
  if (!JT_EQ(jt_register_lapack(), 1)) return;
  enum { n = 9 };
  double a[n * n], wall[n], w[n], z[n * n];
  jt_c ref[n * n];
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) ref[i * n + j] = i == j ? (double)(i * i % 7) : 1.0 / (1 + i + j);
  if (!JT_CHECK(jt_ref_eigenvalues(ref, n, 0, wall))) return;
  for (int vectors = 0; vectors <= 1; vectors++) {
    for (int64_t lo = 0; lo + 3 <= n; lo += 3) {
      const int64_t hi = lo + 3;
      for (int i = 0; i < n * n; i++) a[i] = creal(ref[i]);
      int32_t info = -1;
      frame_t fr;
      syevx_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F64, a, w, z, &info, n, lo, hi,
                  vectors);
      jt_context("syevx [%lld, %lld) vectors %d", (long long)lo, (long long)hi, vectors);
      char msg[640];
      if (!JT_EQ(take_error(jaxmg_ffi_syevx_cpu(&fr.f), msg, sizeof msg), XLA_FFI_Error_Code_OK)) {
        JT_STR_CONTAINS(msg, "(no error expected)");
        continue;
      }
      JT_EQ(info, 0);
      for (int64_t k = 0; k < hi - lo; k++) JT_CHECK(fabs(w[k] - wall[lo + k]) < 1e-12);
      for (int64_t k = 0; k < hi - lo && vectors; k++) {
        double res = 0; /* || A z - w z || with A the original (symmetric) matrix */
        for (int i = 0; i < n; i++) {
          double s = 0;
          for (int j = 0; j < n; j++) s += creal(ref[i * n + j]) * z[k * n + j];
          res = fmax(res, fabs(s - w[k] * z[k * n + i]));
        }
        JT_CHECK(res < 1e-12);
      }
    }
  }
  jt_context("%s", "");
  /* Refused: an interval outside [0, n), a w of the wrong length, a z with vectors off. */
  static const int64_t kBadRange[][3] = {{-1, 2, 1}, {2, n + 1, 1}, {5, 4, 0}};
  for (size_t i = 0; i < sizeof kBadRange / sizeof kBadRange[0]; i++) {
    int32_t info = -1;
    frame_t fr;
    syevx_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F64, a, w, z, &info, n, kBadRange[i][0],
                kBadRange[i][1], (int)kBadRange[i][2]);
    if (kBadRange[i][0] == 5) fr.ret_dims[1][0] = 3; /* w of 3 for [5, 4) */
    JT_EQ(take_error(jaxmg_ffi_syevx_cpu(&fr.f), NULL, 0), XLA_FFI_Error_Code_INVALID_ARGUMENT);
  }
  int32_t info = -1;
  frame_t fr;
  char msg[640];
  syevx_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F32, a, w, z, &info, n, 0, 2, 1);
  JT_EQ(take_error(jaxmg_ffi_syevx_cpu(&fr.f), msg, sizeof msg), XLA_FFI_Error_Code_INVALID_ARGUMENT);
  JT_STR_CONTAINS(msg, "w[2] of its real type");
}

/* The device-local two-stage eigensolver through its handler: every eigenpair of the
 * diagonal-plus-coupling matrix against the reference; bad frames refused with
 * INVALID_ARGUMENT before anything runs. */
XLA_FFI_Error *jaxmg_ffi_syev2s_cpu(XLA_FFI_CallFrame *f);

static void syev2s_frame(frame_t *fr, XLA_FFI_DataType dt, XLA_FFI_DataType rt, void *a,
                         void *w, void *z, int32_t *info, int64_t n, int64_t band, int vectors) {
  frame_init(fr, next_run_id());
  add_arg(fr, dt, a, 2, n, n);
  add_ret(fr, dt, a, 2, n, n);
  add_ret(fr, rt, w, 1, n, 0);
  add_ret(fr, dt, z, 2, vectors ? n : 0, n);
  add_ret(fr, XLA_FFI_DataType_S32, info, 0, 0, 0);
  add_attr(fr, "band", band);
  add_attr(fr, "vectors", vectors);
  add_attr(fr, "parts", 1);
}

void test_ffi_syev2s(void) {
  g_api = make_api();
  if (!JT_EQ(jt_register_lapack(), 1)) return;
  enum { n = 9 };
  double a[n * n], wref[n], w[n], z[n * n];
  jt_c ref[n * n];
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) ref[i * n + j] = i == j ? (double)(i * i % 7) : 1.0 / (1 + i + j);
  if (!JT_CHECK(jt_ref_eigenvalues(ref, n, 0, wref))) return;
  for (int vectors = 0; vectors <= 1; vectors++) {
    for (int64_t band = 0; band <= 4; band += 2) {
      for (int i = 0; i < n * n; i++) a[i] = creal(ref[i]);
      int32_t info = -1;
      frame_t fr;
      syev2s_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F64, a, w, z, &info, n, band,
                   vectors);
      jt_context("syev2s band %lld vectors %d", (long long)band, vectors);
      char msg[640];
      if (!JT_EQ(take_error(jaxmg_ffi_syev2s_cpu(&fr.f), msg, sizeof msg), XLA_FFI_Error_Code_OK)) {
        JT_STR_CONTAINS(msg, "(no error expected)");
        continue;
      }
      JT_EQ(info, 0);
      for (int k = 0; k < n; k++) JT_CHECK(fabs(w[k] - wref[k]) < 1e-12);
      for (int k = 0; k < n && vectors; k++) {
        double res = 0; /* || A z - w z || with A the original (symmetric) matrix */
        for (int i = 0; i < n; i++) {
          double s = 0;
          for (int j = 0; j < n; j++) s += creal(ref[i * n + j]) * z[k * n + j];
          res = fmax(res, fabs(s - w[k] * z[k * n + i]));
        }
        JT_CHECK(res < 1e-12);
      }
    }
  }
  jt_context("%s", "");
  /* Refused: a negative band, w of the wrong length, a z with vectors off, a w of the wrong
   * type. */
  int32_t info = -1;
  frame_t fr;
  char msg[640];
  syev2s_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F64, a, w, z, &info, n, -1, 1);
  JT_EQ(take_error(jaxmg_ffi_syev2s_cpu(&fr.f), msg, sizeof msg),
        XLA_FFI_Error_Code_INVALID_ARGUMENT);
  JT_STR_CONTAINS(msg, "band must be >= 0");
  syev2s_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F64, a, w, z, &info, n, 0, 1);
  fr.ret_dims[1][0] = n - 1;
  JT_EQ(take_error(jaxmg_ffi_syev2s_cpu(&fr.f), NULL, 0), XLA_FFI_Error_Code_INVALID_ARGUMENT);
  syev2s_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F64, a, w, z, &info, n, 0, 0);
  fr.ret_dims[2][0] = n;
  JT_EQ(take_error(jaxmg_ffi_syev2s_cpu(&fr.f), NULL, 0), XLA_FFI_Error_Code_INVALID_ARGUMENT);
  syev2s_frame(&fr, XLA_FFI_DataType_F64, XLA_FFI_DataType_F32, a, w, z, &info, n, 0, 1);
  JT_EQ(take_error(jaxmg_ffi_syev2s_cpu(&fr.f), msg, sizeof msg),
        XLA_FFI_Error_Code_INVALID_ARGUMENT);
  JT_STR_CONTAINS(msg, "w[9] of its real type");
}

/* A platform without a kernel for an op: its library does not list the target, and a call
 * that reaches the handler anyway fails with UNAVAILABLE before anything is decoded. */
static int fake_has_kernel(jaxmg_op_t op) { return op != JAXMG_OP_POTRI; }

void test_ffi_no_kernel(void) {
  g_api = make_api();
  const jaxmg_platform_t fake = {.platform = "fake", .has_kernel = fake_has_kernel};
  const char *targets = jaxmg__ffi_targets(&fake);
  JT_CHECK(strstr(targets, "jaxmg_potri") == NULL);
  JT_STR_CONTAINS(targets, "jaxmg_potrf,jaxmg_potrs,jaxmg_solve,jaxmg_syevd,");
  JT_STR_CONTAINS(targets, ",jaxmg_syevd_n_whole");
  /* The CPU library's own list is unchanged by another platform's. */
  JT_STR_CONTAINS(jaxmg_ffi_targets(), "jaxmg_solve,jaxmg_potri,jaxmg_syevd");
  JT_CHECK(strstr(jaxmg_ffi_targets(), "jaxmg_getrs") == NULL); /* GPUs only */
  bufs_t u;
  if (!bufs_alloc(&u, JAXMG_F64, 4, 4, 0)) return;
  frame_t fr;
  char msg[640];
  op_frame(&fr, "potri", &u, next_run_id(), 2, 1, 1, 60000);
  JT_EQ(take_error(jaxmg__ffi_dispatch(&fr.f, JAXMG_OP_POTRI, &fake), msg, sizeof msg),
        XLA_FFI_Error_Code_UNAVAILABLE);
  JT_STR_CONTAINS(msg, "jaxmg.potri: jaxmg_potri has no fake kernel");
  JT_EQ(u.info, -99);
  /* Compilation still succeeds: the stages before EXECUTE do nothing. */
  fr.f.stage = XLA_FFI_ExecutionStage_INSTANTIATE;
  JT_CHECK(jaxmg__ffi_dispatch(&fr.f, JAXMG_OP_POTRI, &fake) == NULL);
  bufs_free(&u);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* Attributes are looked up by name: their order does not matter and unknown ones are
 * ignored; mp_procs is optional, an int32 array with one entry per position. */
void test_ffi_attrs(void) {
  if (!jt_register_lapack()) return;
  g_api = make_api();
  int64_t live = jaxmg_live_sessions();
  uint64_t rng = 77;
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, 4, 1, 4);
  jt_c *A = jt_random_hpd(4, 0, &rng), *B = jt_random_mat(4, 1, 0, &rng);
  jt_c *X = malloc(4 * sizeof *X);
  bufs_t u;
  frame_t fr;
  char msg[640];
  if (!JT_CHECK(A && B && X) || !bufs_alloc(&u, JAXMG_F64, 4, 4, 1)) goto done;
  jt_round(A, 16, JAXMG_F64);
  jt_round(B, 4, JAXMG_F64);
  for (int round = 0; round < 3; round++) {
    jt_context("attributes, round %d", round);
    jt_make_shard(A, 4, 4, 0, JAXMG_F64, u.a);
    jt_rhs_to_solver(B, 1, &lay, JAXMG_F64, u.b);
    u.ids[0] = 0, u.ids[1] = 0;
    u.info = -99;
    op_frame(&fr, "potrs", &u, next_run_id(), 4, 1, 1, 60000);
    add_attr(&fr, "unused", 5);
    int32_t procs[1] = {0}; /* one position, in this process */
    if (round == 1) add_attr_array(&fr, "mp_procs", XLA_FFI_DataType_S32, procs, 1);
    if (round == 2) { /* every attribute in the reverse order */
      const int64_t n = fr.f.attrs.size;
      for (int64_t i = 0; i < n / 2; i++) {
        XLA_FFI_AttrType ty = fr.attr_types[i];
        XLA_FFI_ByteSpan *nm = fr.names[i];
        void *at = fr.attrs[i];
        fr.attr_types[i] = fr.attr_types[n - 1 - i], fr.attr_types[n - 1 - i] = ty;
        fr.names[i] = fr.names[n - 1 - i], fr.names[n - 1 - i] = nm;
        fr.attrs[i] = fr.attrs[n - 1 - i], fr.attrs[n - 1 - i] = at;
      }
    }
    if (!JT_EQ(take_error(jaxmg_ffi_potrs_cpu(&fr.f), msg, sizeof msg), XLA_FFI_Error_Code_OK))
      JT_STR_CONTAINS(msg, "(no error expected)");
    JT_EQ(u.info, 0);
    jt_solution_from_solver(u.x, 1, &lay, JAXMG_F64, X);
    JT_LT_DBL(jt_solve_ratio(A, X, B, 4, 1, JAXMG_F64), 30.0);
  }
  /* mp_procs of the wrong kind or length: INVALID_ARGUMENT naming it, before any wait. */
  int64_t procs64[2] = {0, 0};
  int32_t procs3[3] = {0, 0, 0};
  static const struct {
    const char *what;
    int kind; /* 0: scalar, 1: int64 array, 2: int32 array of 3 for 2 positions */
    const char *expect;
  } kBadProcs[] = {
      {"scalar", 0, "jaxmg.potrs: attribute 'mp_procs' must be an int32 array"},
      {"int64", 1, "jaxmg.potrs: attribute 'mp_procs' must be an int32 array"},
      {"length", 2, "jaxmg.potrs: attribute 'mp_procs' has 3 entries, not one per position "
                    "of group 0"},
  };
  bufs_free(&u);
  if (!bufs_alloc(&u, JAXMG_F64, 8, 4, 1)) goto done; /* position 0 of 2 */
  u.ids[0] = 0, u.ids[1] = 0;
  for (size_t i = 0; i < sizeof kBadProcs / sizeof kBadProcs[0]; i++) {
    jt_context("mp_procs: %s", kBadProcs[i].what);
    u.info = -99;
    op_frame(&fr, "potrs", &u, next_run_id(), 2, 2, 1, 300);
    if (kBadProcs[i].kind == 0) add_attr(&fr, "mp_procs", 0);
    if (kBadProcs[i].kind == 1)
      add_attr_array(&fr, "mp_procs", XLA_FFI_DataType_S64, procs64, 2);
    if (kBadProcs[i].kind == 2)
      add_attr_array(&fr, "mp_procs", XLA_FFI_DataType_S32, procs3, 3);
    JT_EQ(take_error(jaxmg_ffi_potrs_cpu(&fr.f), msg, sizeof msg),
          XLA_FFI_Error_Code_INVALID_ARGUMENT);
    JT_STR_CONTAINS(msg, kBadProcs[i].expect);
    JT_EQ(u.info, -99);
  }
  jt_context("%s", "");
  bufs_free(&u);
done:
  free(X);
  free(B);
  free(A);
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* ---- complete calls ----------------------------------------------------------------------- */
typedef struct {
  frame_t fr;
  handler_t fn;
  int delay_ms; /* before calling */
  int code;
  char msg[640];
} call_t;

static void *call_thread(void *p) {
  call_t *c = p;
  if (c->delay_ms > 0) {
    struct timespec ts = {0, (long)c->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
  }
  c->code = take_error(c->fn(&c->fr.f), c->msg, sizeof c->msg);
  if (c->code == XLA_FFI_Error_Code_OK && c->fr.f.future) {
    c->code = take_future(c->fr.f.future, c->msg, sizeof c->msg);
    c->fr.f.future = NULL;
  }
  return NULL;
}

/* Runs the P frames concurrently, one thread each (as XLA does). */
static void run_calls(call_t *calls, int P) {
  pthread_t th[8];
  int started[8] = {0};
  for (int r = 0; r < P; r++)
    started[r] = JT_EQ(pthread_create(&th[r], NULL, call_thread, &calls[r]), 0);
  for (int r = 0; r < P; r++)
    if (started[r]) pthread_join(th[r], NULL);
}

/* A Cholesky solve through the potrs handler with P participants, checked against A x = b.
 * Returns 1 when all checks passed. `fault` = {point, rank} injects a failure and checks
 * the codes instead. */
/* alias = 0: the result 'a' is a buffer of its own (XLA did not alias it); the handler must
 * copy the operand into it first and leave the operand untouched. */
static int potrs_through_handler_ex(jaxmg_dtype_t dt, int P, int64_t nloc, int64_t tile,
                                    int64_t nrhs, int rounds, uint64_t seed, int alias) {
  const int64_t n = nloc * P;
  const int cplx = jt_is_complex(dt);
  uint64_t rng = seed;
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, nloc, P, tile);
  jt_c *A = jt_random_hpd(n, cplx, &rng), *B = jt_random_mat(n, nrhs, cplx, &rng);
  jt_c *X = malloc((size_t)(n * nrhs) * sizeof *X);
  bufs_t u[8];
  void *own[8] = {0};
  call_t *calls = calloc((size_t)P, sizeof *calls);
  int ok = JT_CHECK(A && B && X && calls), nb = 0;
  for (; ok && nb < P; nb++) {
    ok &= bufs_alloc(&u[nb], dt, n, nloc, nrhs);
    if (!alias) ok &= JT_CHECK((own[nb] = calloc((size_t)(nloc * n), jaxmg_dtype_size(dt))) != NULL);
  }
  if (!ok) goto done;
  jt_round(A, n * n, dt);
  jt_round(B, n * nrhs, dt);
  const int64_t run = next_run_id(), site = 41;
  for (int round = 0; ok && round < rounds; round++) { /* the same site again: a loop */
    for (int r = 0; r < P; r++) {
      jt_make_shard(A, n, nloc, r, dt, u[r].a);
      jt_rhs_to_solver(B, nrhs, &lay, dt, u[r].b);
      u[r].ids[0] = 0, u[r].ids[1] = r;
      u[r].info = -99;
      op_frame(&calls[r].fr, "potrs", &u[r], run, tile, P, site, 60000);
      if (!alias) calls[r].fr.ret_buf[0].data = own[r];
      calls[r].fn = jaxmg_ffi_potrs_cpu;
    }
    run_calls(calls, P);
    for (int r = 0; ok && r < P; r++) {
      jt_context("potrs via handler: %s, P %d, nloc %lld, tile %lld, nrhs %lld, round %d, rank %d",
                 jt_dtype_name(dt), P, (long long)nloc, (long long)tile, (long long)nrhs, round, r);
      ok &= JT_EQ(calls[r].code, XLA_FFI_Error_Code_OK);
      if (calls[r].code) JT_STR_CONTAINS(calls[r].msg, "(no error expected)");
      ok &= JT_EQ(u[r].info, 0);
      ok &= JT_EQ(memcmp(u[r].x, u[0].x, (size_t)(n * nrhs) * jaxmg_dtype_size(dt)), 0);
      jt_solution_from_solver(u[r].x, nrhs, &lay, dt, X);
      ok &= JT_LT_DBL(jt_solve_ratio(A, X, B, n, nrhs, dt), 30.0);
    }
  }
  jt_context("%s", "");
done:
  for (int r = 0; r < nb; r++) {
    bufs_free(&u[r]);
    free(own[r]);
  }
  free(calls);
  free(X);
  free(B);
  free(A);
  return ok;
}

static int potrs_through_handler(jaxmg_dtype_t dt, int P, int64_t nloc, int64_t tile,
                                 int64_t nrhs, int rounds, uint64_t seed) {
  return potrs_through_handler_ex(dt, P, nloc, tile, nrhs, rounds, seed, 1);
}

void test_ffi_potrs_one(void) {
  if (!jt_register_lapack()) return;
  g_api = make_api();
  int64_t live = jaxmg_live_sessions();
  potrs_through_handler(JAXMG_F64, 1, 8, 4, 2, 1, 11);
  potrs_through_handler(JAXMG_C128, 1, 6, 3, 1, 1, 12);
  potrs_through_handler(JAXMG_F32, 1, 5, 5, 3, 1, 13);
  potrs_through_handler_ex(JAXMG_F64, 1, 8, 4, 2, 1, 14, 0); /* result not aliased */
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

void test_ffi_potrs_two(void) {
  if (!jt_register_lapack()) return;
  g_api = make_api();
  int64_t live = jaxmg_live_sessions();
  potrs_through_handler(JAXMG_F64, 2, 4, 2, 2, 3, 21);
  potrs_through_handler(JAXMG_C64, 2, 6, 2, 3, 1, 22);
  potrs_through_handler(JAXMG_C128, 3, 4, 1, 1, 2, 23);
  potrs_through_handler_ex(JAXMG_F64, 3, 4, 2, 2, 2, 24, 0); /* results not aliased */
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* syevd through the handler: eigenvalues in 'w' (real dtype), replicated, ascending, equal to
 * LAPACK's in double precision. */
void test_ffi_syevd_two(void) {
  if (!jt_register_lapack()) return;
  g_api = make_api();
  int64_t live = jaxmg_live_sessions();
  const jaxmg_dtype_t dts[] = {JAXMG_F64, JAXMG_C128};
  for (size_t i = 0; i < 2; i++) {
    const jaxmg_dtype_t dt = dts[i];
    const int P = 2, cplx = jt_is_complex(dt);
    const int64_t nloc = 4, n = nloc * P;
    uint64_t rng = 31 + i;
    jt_c *A = jt_random_herm(n, cplx, &rng);
    double wref[8];
    bufs_t u[2];
    call_t calls[2];
    memset(calls, 0, sizeof calls);
    if (!JT_CHECK(A != NULL) || !JT_CHECK(jt_ref_eigenvalues(A, n, cplx, wref))) {
      free(A);
      continue;
    }
    int nb = 0;
    while (nb < P && bufs_alloc(&u[nb], dt, n, nloc, 0)) nb++;
    const int64_t run = next_run_id();
    for (int r = 0; nb == P && r < P; r++) {
      jt_make_shard(A, n, nloc, r, dt, u[r].a);
      u[r].ids[0] = 0, u[r].ids[1] = r;
      op_frame(&calls[r].fr, "syevd", &u[r], run, 2, P, 5, 60000);
      calls[r].fn = jaxmg_ffi_syevd_cpu;
    }
    if (nb == P) run_calls(calls, P);
    const double tol = 30.0 * (double)n * jt_norm1(A, n, n, n) * jt_eps(dt);
    for (int r = 0; nb == P && r < P; r++) {
      jt_context("syevd via handler: %s, rank %d", jt_dtype_name(dt), r);
      JT_EQ(calls[r].code, XLA_FFI_Error_Code_OK);
      JT_EQ(u[r].info, 0);
      const double *w = u[r].w;
      for (int64_t k = 0; k < n; k++) JT_LT_DBL(fabs(w[k] - wref[k]), tol);
    }
    jt_context("%s", "");
    for (int r = 0; r < nb; r++) bufs_free(&u[r]);
    free(A);
  }
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* Injected faults: the failing participant reports its own error, the others an error that
 * names it, and nobody hangs. */
static void potrs_fault_round(int point, int rank, int64_t timeout_ms, int64_t run, int *codes,
                              char msgs[][640], int only_rank) {
  const int P = 2;
  const int64_t nloc = 4, n = 8;
  uint64_t rng = 5;
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, nloc, P, 2);
  jt_c *A = jt_random_hpd(n, 0, &rng), *B = jt_random_mat(n, 1, 0, &rng);
  bufs_t u[2];
  call_t calls[2];
  int nb = 0;
  memset(calls, 0, sizeof calls);
  if (!JT_CHECK(A && B)) goto done;
  while (nb < P && bufs_alloc(&u[nb], JAXMG_F64, n, nloc, 1)) nb++;
  if (nb < P) goto done;
  for (int r = 0; r < P; r++) {
    jt_make_shard(A, n, nloc, r, JAXMG_F64, u[r].a);
    jt_rhs_to_solver(B, 1, &lay, JAXMG_F64, u[r].b);
    u[r].ids[0] = 0, u[r].ids[1] = r;
    op_frame(&calls[r].fr, "potrs", &u[r], run, 2, P, 3, timeout_ms);
    calls[r].fn = jaxmg_ffi_potrs_cpu;
  }
  jaxmg_set_fault(point, rank, 1);
  if (only_rank >= 0) {
    run_calls(&calls[only_rank], 1);
  } else {
    run_calls(calls, P);
  }
  jaxmg_set_fault(0, -1, 0);
  for (int r = 0; r < P; r++) {
    codes[r] = calls[r].code;
    memcpy(msgs[r], calls[r].msg, sizeof calls[r].msg);
  }
done:
  for (int r = 0; r < nb; r++) bufs_free(&u[r]);
  free(B);
  free(A);
}

void test_ffi_faults(void) {
  if (!jt_register_lapack()) return;
  g_api = make_api();
  int64_t live = jaxmg_live_sessions();
  int codes[2];
  char msgs[2][640];

  /* A library failure on position 1, before any barrier. */
  potrs_fault_round(3, 1, 60000, next_run_id(), codes, msgs, -1);
  JT_EQ(codes[1], XLA_FFI_Error_Code_INTERNAL);
  JT_STR_CONTAINS(msgs[1], "jaxmg.potrs: injected solver failure");
  JT_EQ(codes[0], XLA_FFI_Error_Code_ABORTED);
  JT_STR_CONTAINS(msgs[0], "failed on the device at mesh position 1");
  JT_STR_CONTAINS(msgs[0], "injected solver failure");
  JT_EQ(jaxmg_live_sessions(), live);

  /* An allocation failure on position 0. */
  potrs_fault_round(2, 0, 60000, next_run_id(), codes, msgs, -1);
  JT_EQ(codes[0], XLA_FFI_Error_Code_RESOURCE_EXHAUSTED);
  JT_EQ(codes[1], XLA_FFI_Error_Code_ABORTED);
  JT_STR_CONTAINS(msgs[1], "mesh position 0");
  JT_EQ(jaxmg_live_sessions(), live);

  /* Position 1 never arrives: position 0 gives up after the (short) deadline. */
  const int64_t run = next_run_id();
  potrs_fault_round(1, 1, 200, run, codes, msgs, -1);
  JT_EQ(codes[1], XLA_FFI_Error_Code_INTERNAL);
  JT_STR_CONTAINS(msgs[1], "mesh position 1 never arrives");
  JT_EQ(codes[0], XLA_FFI_Error_Code_DEADLINE_EXCEEDED);
  JT_STR_CONTAINS(msgs[0], "jaxmg.potrs: timed out");
  JT_STR_CONTAINS(msgs[0], "mesh positions [1]");
  JT_EQ(jaxmg_live_sessions(), live + 1); /* the tombstone */
  /* Its next call of the same execution fails at once from the tombstone. */
  potrs_fault_round(0, -1, 60000, run, codes, msgs, 1);
  JT_EQ(codes[1], XLA_FFI_Error_Code_DEADLINE_EXCEEDED);
  JT_STR_CONTAINS(msgs[1], "mesh positions [1]");
  JT_EQ(jaxmg_live_sessions(), live);

  /* Faults are consumed: the next call works. */
  potrs_fault_round(0, -1, 60000, next_run_id(), codes, msgs, -1);
  JT_EQ(codes[0], XLA_FFI_Error_Code_OK);
  JT_EQ(codes[1], XLA_FFI_Error_Code_OK);
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}

/* ---- call instances (stateful handlers) --------------------------------------------------- */
#if XLA_FFI_API_MAJOR == 0 && XLA_FFI_API_MINOR >= 3
static atomic_int g_type_registrations, g_state_sets;
static int64_t g_fake_type_id;
static void (*g_fake_deleter)(void *);

static XLA_FFI_Error *fake_error_now(XLA_FFI_Error_Code code, const char *msg) {
  XLA_FFI_Error_Create_Args c;
  memset(&c, 0, sizeof c);
  c.errc = code;
  c.message = msg;
  return fake_error_create(&c);
}

static XLA_FFI_Error *fake_type_register(XLA_FFI_Type_Register_Args *args) {
  atomic_fetch_add(&g_type_registrations, 1);
  if (args->type_id->type_id != 0 || !args->type_info || !args->type_info->deleter)
    return fake_error_now(XLA_FFI_Error_Code_INVALID_ARGUMENT, "bad type registration");
  g_fake_type_id = 4242;
  g_fake_deleter = args->type_info->deleter;
  args->type_id->type_id = g_fake_type_id;
  return NULL;
}

static XLA_FFI_Error *fake_state_set(XLA_FFI_State_Set_Args *args) {
  atomic_fetch_add(&g_state_sets, 1);
  fake_thunk_t *t = args->ctx->thunk;
  if (args->stage != XLA_FFI_ExecutionStage_INSTANTIATE || !t || t->state ||
      args->type_id->type_id != g_fake_type_id)
    return fake_error_now(XLA_FFI_Error_Code_INTERNAL, "bad state set");
  t->state = args->state;
  t->type_id = args->type_id->type_id;
  return NULL;
}

static XLA_FFI_Error *fake_state_get(XLA_FFI_State_Get_Args *args) {
  fake_thunk_t *t = args->ctx->thunk;
  if (args->stage != XLA_FFI_ExecutionStage_INSTANTIATE || !t || !t->state ||
      t->type_id != args->type_id->type_id)
    return fake_error_now(XLA_FFI_Error_Code_NOT_FOUND, "state is not set");
  args->state = t->state;
  return NULL;
}

static XLA_FFI_Api make_state_api(int minor, int futures) {
  XLA_FFI_Api api = make_api();
  api.api_version.minor_version = minor;
  if (futures) {
    api.XLA_FFI_Future_Create = fake_future_create;
    api.XLA_FFI_Future_SetAvailable = fake_future_available;
    api.XLA_FFI_Future_SetError = fake_future_error;
  }
  api.XLA_FFI_Type_Register = fake_type_register;
  api.XLA_FFI_State_Set = fake_state_set;
  api.XLA_FFI_State_Get = fake_state_get;
  return api;
}

/* The INSTANTIATE call XLA makes when it builds the custom call of `thunk`. */
static void instantiate(fake_thunk_t *thunk) {
  frame_t fr;
  frame_init(&fr, 0);
  fr.f.stage = XLA_FFI_ExecutionStage_INSTANTIATE;
  fr.ctx.thunk = thunk;
  add_attr(&fr, "site", 41); /* XLA passes the attributes, no operands */
  JT_CHECK(jaxmg_ffi_potrs_cpu(&fr.f) == NULL);
}

/* Two instances of one call site in one run, on 2 participants: each participant runs both
 * instances at once (two threads, as XLA's CPU runtime may), position 0 starting instance A
 * first and position 1 instance B first. A and B solve different systems; keyed by the site
 * alone, the first sessions would pair A on one position with B on the other. */
static void two_instances_round(fake_thunk_t thunks[2], int round) {
  const int P = 2, K = 2;
  const int64_t nloc = 4, n = 8, nrhs = 2, tile = 2, site = 41;
  const int64_t run = next_run_id();
  uint64_t rng = 900 + (uint64_t)round;
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, nloc, P, tile);
  jt_c *A[2] = {jt_random_hpd(n, 0, &rng), jt_random_hpd(n, 0, &rng)};
  jt_c *B[2] = {jt_random_mat(n, nrhs, 0, &rng), jt_random_mat(n, nrhs, 0, &rng)};
  jt_c *X = malloc((size_t)(n * nrhs) * sizeof *X);
  bufs_t u[4];
  call_t *calls = calloc(4, sizeof *calls);
  int nb = 0, ok = JT_CHECK(A[0] && A[1] && B[0] && B[1] && X && calls);
  while (ok && nb < P * K && (ok = bufs_alloc(&u[nb], JAXMG_F64, n, nloc, nrhs))) nb++;
  if (!ok) goto done;
  for (int k = 0; k < K; k++) {
    for (int r = 0; r < P; r++) {
      int c = k * P + r;
      jt_make_shard(A[k], n, nloc, r, JAXMG_F64, u[c].a);
      jt_rhs_to_solver(B[k], nrhs, &lay, JAXMG_F64, u[c].b);
      u[c].ids[0] = 0, u[c].ids[1] = r;
      op_frame(&calls[c].fr, "potrs", &u[c], run, tile, P, site, 60000);
      calls[c].fr.ctx.thunk = &thunks[k];
      calls[c].fn = jaxmg_ffi_potrs_cpu;
      calls[c].delay_ms = (r == 0) == (k == 0) ? 0 : 30;
    }
  }
  run_calls(calls, P * K);
  for (int c = 0; c < P * K; c++) {
    int k = c / P;
    jt_context("two instances: round %d, instance %d, rank %d", round, k, c % P);
    if (!JT_EQ(calls[c].code, XLA_FFI_Error_Code_OK)) JT_STR_CONTAINS(calls[c].msg, "(none)");
    JT_EQ(u[c].info, 0);
    jt_solution_from_solver(u[c].x, nrhs, &lay, JAXMG_F64, X);
    JT_LT_DBL(jt_solve_ratio(A[k], X, B[k], n, nrhs, JAXMG_F64), 30.0);
  }
  jt_context("%s", "");
done:
  for (int c = 0; c < nb; c++) bufs_free(&u[c]);
  free(calls);
  free(X);
  for (int k = 0; k < 2; k++) free(A[k]), free(B[k]);
}

void test_ffi_instances(void) {
  if (!jt_register_lapack()) return;
  int64_t live = jaxmg_live_sessions(), given = jaxmg_ffi_instances();
  fake_thunk_t old[2] = {{NULL, 0}, {NULL, 0}};

  /* A runtime older than FFI API 0.3 lays the State structs out differently: untouched. */
  g_api = make_state_api(2, 0);
  instantiate(&old[0]);
  JT_EQ(atomic_load(&g_type_registrations), 0);
  JT_EQ(atomic_load(&g_state_sets), 0);
  JT_CHECK(old[0].state == NULL);
  JT_EQ(jaxmg_ffi_instances(), given);

  /* API 0.3: one type registration, one state per custom call, distinct ids. */
  g_api = make_state_api(3, 0);
  fake_thunk_t thunks[2] = {{NULL, 0}, {NULL, 0}};
  instantiate(&thunks[0]);
  instantiate(&thunks[1]);
  JT_EQ(atomic_load(&g_type_registrations), 1);
  JT_EQ(atomic_load(&g_state_sets), 2);
  JT_CHECK(thunks[0].state != NULL && thunks[1].state != NULL);
  JT_EQ(jaxmg_ffi_instances(), given + 2);
  JT_CHECK(thunks[0].state != thunks[1].state);

  /* Synchronous calls (a runtime without futures): one thread per call here. */
  for (int round = 0; round < 4; round++) two_instances_round(thunks, round);
  /* A call compiled without the INSTANTIATE stage (no state) still runs (instance 0). */
  potrs_through_handler(JAXMG_F64, 2, 4, 2, 1, 1, 31);

  /* Asynchronous calls: the handlers return futures at once, workers meet and complete them;
   * errors travel through the future. */
  g_api = make_state_api(3, 1);
  for (int round = 4; round < 8; round++) two_instances_round(thunks, round);
  potrs_through_handler(JAXMG_F64, 3, 4, 2, 2, 2, 32);
  {
    int codes[2];
    char msgs[2][640];
    potrs_fault_round(3, 1, 60000, next_run_id(), codes, msgs, -1);
    JT_EQ(codes[1], XLA_FFI_Error_Code_INTERNAL);
    JT_STR_CONTAINS(msgs[1], "injected solver failure");
    JT_EQ(codes[0], XLA_FFI_Error_Code_ABORTED);
    JT_STR_CONTAINS(msgs[0], "failed on the device at mesh position 1");
  }
  JT_EQ(atomic_load(&g_live_futures), 0);

  /* The executable goes away: XLA destroys each state with the registered deleter. */
  for (int k = 0; k < 2; k++) {
    if (JT_CHECK(g_fake_deleter != NULL) && thunks[k].state) g_fake_deleter(thunks[k].state);
  }
  JT_EQ(jaxmg_live_sessions(), live);
  JT_EQ(atomic_load(&g_live_errors), 0);
}
#else
void test_ffi_instances(void) {
  /* A header older than FFI API 0.3: the calls have no instance. */
  JT_EQ(jaxmg_ffi_instances(), 0);
}
#endif
