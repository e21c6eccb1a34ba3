/* XLA FFI call-frame decoding and error conversion. */
#include "common/ffi_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True when the runtime's API struct is large enough to hold `field`. */
#define API_HAS(api, field) \
  ((api)->struct_size >= offsetof(XLA_FFI_Api, field) + sizeof((api)->field) && (api)->field)

static void drop_error(const XLA_FFI_Api *api, XLA_FFI_Error *e) {
  XLA_FFI_Error_Destroy_Args d;
  memset(&d, 0, sizeof d);
  d.struct_size = XLA_FFI_Error_Destroy_Args_STRUCT_SIZE;
  d.error = e;
  api->XLA_FFI_Error_Destroy(&d);
}

int jaxmg__ffi_metadata(XLA_FFI_CallFrame *f) {
  /* Walk the extension chain through XLA_FFI_Metadata_Extension, whose name and members are
   * the same in every header version. */
  XLA_FFI_Metadata_Extension *m = (XLA_FFI_Metadata_Extension *)(void *)f->extension_start;
  for (; m; m = (XLA_FFI_Metadata_Extension *)(void *)m->extension_base.next) {
    if (m->extension_base.type == XLA_FFI_Extension_Metadata) {
      m->metadata->api_version.major_version = JAXMG_FFI_MAJOR;
      m->metadata->api_version.minor_version = JAXMG_FFI_MINOR;
      m->metadata->traits = 0;
      return 1;
    }
  }
  return 0;
}

static XLA_FFI_Error_Code to_xla_code(jaxmg_status_t s) {
  switch (s) {
    case JAXMG_OK: return XLA_FFI_Error_Code_OK;
    case JAXMG_EINVAL: return XLA_FFI_Error_Code_INVALID_ARGUMENT;
    case JAXMG_ENOMEM: return XLA_FFI_Error_Code_RESOURCE_EXHAUSTED;
    case JAXMG_ETIMEDOUT: return XLA_FFI_Error_Code_DEADLINE_EXCEEDED;
    case JAXMG_EPEER: return XLA_FFI_Error_Code_ABORTED;
    case JAXMG_EUNAVAIL: return XLA_FFI_Error_Code_UNAVAILABLE;
    case JAXMG_ELIB:
    case JAXMG_EINTERNAL:
    case JAXMG_EFAULT: return XLA_FFI_Error_Code_INTERNAL;
  }
  return XLA_FFI_Error_Code_UNKNOWN;
}

XLA_FFI_Error *jaxmg__ffi_error(const XLA_FFI_Api *api, const jaxmg_error_t *e) {
  XLA_FFI_Error_Create_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
  a.message = e->msg;
  a.errc = to_xla_code(e->code);
  return api->XLA_FFI_Error_Create(&a);
}

static int map_dtype(int x, jaxmg_dtype_t *out) {
  switch (x) {
    case XLA_FFI_DataType_F32: *out = JAXMG_F32; return 1;
    case XLA_FFI_DataType_F64: *out = JAXMG_F64; return 1;
    case XLA_FFI_DataType_C64: *out = JAXMG_C64; return 1;
    case XLA_FFI_DataType_C128: *out = JAXMG_C128; return 1;
    default: return 0;
  }
}

const char *jaxmg__xla_dtype_name(int x) {
  switch (x) {
    case XLA_FFI_DataType_PRED: return "bool";
    case XLA_FFI_DataType_S8: return "int8";
    case XLA_FFI_DataType_S16: return "int16";
    case XLA_FFI_DataType_S32: return "int32";
    case XLA_FFI_DataType_S64: return "int64";
    case XLA_FFI_DataType_U8: return "uint8";
    case XLA_FFI_DataType_U32: return "uint32";
    case XLA_FFI_DataType_U64: return "uint64";
    case XLA_FFI_DataType_F16: return "float16";
    case XLA_FFI_DataType_BF16: return "bfloat16";
    case XLA_FFI_DataType_F32: return "float32";
    case XLA_FFI_DataType_F64: return "float64";
    case XLA_FFI_DataType_C64: return "complex64";
    case XLA_FFI_DataType_C128: return "complex128";
    default: return "an unsupported dtype";
  }
}

jaxmg_status_t jaxmg__ffi_buffer(const XLA_FFI_CallFrame *f, int is_ret, int64_t i,
                                 jaxmg_buf_t *out, const char *op, const char *what,
                                 jaxmg_error_t *err) {
  int64_t n = is_ret ? f->rets.size : f->args.size;
  if (i >= n) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: expected %s number %lld, got only %lld %s",
                         op, is_ret ? "result" : "operand", (long long)i + 1, (long long)n,
                         is_ret ? "results" : "operands");
  }
  int type = is_ret ? (int)f->rets.types[i] : (int)f->args.types[i];
  if (type != 1 /* BUFFER for both args and rets */) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: '%s' must be a buffer", op, what);
  }
  const XLA_FFI_Buffer *b = is_ret ? f->rets.rets[i] : f->args.args[i];
  out->xla_dtype = (int)b->dtype;
  out->known = map_dtype((int)b->dtype, &out->dtype);
  out->data = b->data;
  out->rank = b->rank;
  out->dims = b->dims;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__ffi_attr_i64(const XLA_FFI_CallFrame *f, const char *name, int64_t *out,
                                   const char *op, jaxmg_error_t *err) {
  size_t len = strlen(name);
  for (int64_t i = 0; i < f->attrs.size; i++) {
    const XLA_FFI_ByteSpan *nm = f->attrs.names[i];
    if (nm->len != len || memcmp(nm->ptr, name, len) != 0) continue;
    if (f->attrs.types[i] != XLA_FFI_AttrType_SCALAR) {
      return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: attribute '%s' must be an integer scalar",
                           op, name);
    }
    const XLA_FFI_Scalar *s = f->attrs.attrs[i];
    switch (s->dtype) {
      case XLA_FFI_DataType_S64: *out = *(const int64_t *)s->value; return JAXMG_OK;
      case XLA_FFI_DataType_S32: *out = *(const int32_t *)s->value; return JAXMG_OK;
      case XLA_FFI_DataType_U32: *out = *(const uint32_t *)s->value; return JAXMG_OK;
      case XLA_FFI_DataType_S8: *out = *(const int8_t *)s->value; return JAXMG_OK;
      case XLA_FFI_DataType_PRED: *out = *(const uint8_t *)s->value; return JAXMG_OK;
      default:
        return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: attribute '%s' must be an integer, got %s",
                             op, name, jaxmg__xla_dtype_name((int)s->dtype));
    }
  }
  return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: missing attribute '%s'", op, name);
}

jaxmg_status_t jaxmg__ffi_attr_i32_array(const XLA_FFI_CallFrame *f, const char *name,
                                         const int32_t **data, int64_t *len, const char *op,
                                         jaxmg_error_t *err) {
  size_t nlen = strlen(name);
  *data = NULL;
  *len = 0;
  for (int64_t i = 0; i < f->attrs.size; i++) {
    const XLA_FFI_ByteSpan *nm = f->attrs.names[i];
    if (nm->len != nlen || memcmp(nm->ptr, name, nlen) != 0) continue;
    const XLA_FFI_Array *a = f->attrs.attrs[i];
    if (f->attrs.types[i] != XLA_FFI_AttrType_ARRAY || a->dtype != XLA_FFI_DataType_S32) {
      return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: attribute '%s' must be an int32 array",
                           op, name);
    }
    *data = a->data;
    *len = (int64_t)a->size;
    return JAXMG_OK;
  }
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__ffi_run_id(const XLA_FFI_CallFrame *f, int64_t *out, const char *op,
                                 jaxmg_error_t *err) {
  const XLA_FFI_Api *api = f->api;
  if (!API_HAS(api, XLA_FFI_RunId_Get)) {
    return jaxmg__seterr(err, JAXMG_EUNAVAIL,
                         "jaxmg.%s: this jaxlib's FFI (API %d.%d) has no run id; jaxmg needs "
                         "jaxlib >= 0.6.2",
                         op, api->api_version.major_version, api->api_version.minor_version);
  }
  XLA_FFI_RunId_Get_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_RunId_Get_Args_STRUCT_SIZE;
  a.ctx = f->ctx;
  XLA_FFI_Error *e = api->XLA_FFI_RunId_Get(&a);
  if (e) {
    drop_error(api, e);
    return jaxmg__seterr(err, JAXMG_EUNAVAIL, "jaxmg.%s: XLA did not provide a run id", op);
  }
  *out = a.run_id;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__ffi_device_ordinal(const XLA_FFI_CallFrame *f, int *out) {
  const XLA_FFI_Api *api = f->api;
  if (!API_HAS(api, XLA_FFI_DeviceOrdinal_Get)) return JAXMG_EUNAVAIL;
  XLA_FFI_DeviceOrdinal_Get_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_DeviceOrdinal_Get_Args_STRUCT_SIZE;
  a.ctx = f->ctx;
  XLA_FFI_Error *e = api->XLA_FFI_DeviceOrdinal_Get(&a);
  if (e) {
    drop_error(api, e);
    return JAXMG_EUNAVAIL;
  }
  *out = (int)a.device_ordinal;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__ffi_stream(const XLA_FFI_CallFrame *f, void **out, const char *op,
                                 jaxmg_error_t *err) {
  XLA_FFI_Stream_Get_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_Stream_Get_Args_STRUCT_SIZE;
  a.ctx = f->ctx;
  XLA_FFI_Error *e = f->api->XLA_FFI_Stream_Get(&a);
  if (e) {
    drop_error(f->api, e);
    return jaxmg__seterr(err, JAXMG_EUNAVAIL, "jaxmg.%s: XLA did not provide a stream", op);
  }
  *out = a.stream;
  return JAXMG_OK;
}

/* Copies XLA's message of e into why[len] (when the runtime can say it) and destroys e. */
static void take_message(const XLA_FFI_Api *api, XLA_FFI_Error *e, char *why, size_t len) {
  const char *msg = NULL;
  /* XLA_FFI_Error_GetMessage is in the headers of FFI API 0.3 and older only (0.4 replaced
   * it); against a newer header the reason is not read. */
#if XLA_FFI_API_MAJOR == 0 && XLA_FFI_API_MINOR <= 3
  if (API_HAS(api, XLA_FFI_Error_GetMessage)) {
    XLA_FFI_Error_GetMessage_Args m;
    memset(&m, 0, sizeof m);
    m.struct_size = XLA_FFI_Error_GetMessage_Args_STRUCT_SIZE;
    m.error = e;
    api->XLA_FFI_Error_GetMessage(&m);
    msg = m.message;
  }
#endif
  if (why && len) snprintf(why, len, "%s", msg && *msg ? msg : "no reason given");
  drop_error(api, e);
}

void *jaxmg__ffi_alloc(const XLA_FFI_CallFrame *f, size_t bytes, char *why, size_t why_len) {
  const XLA_FFI_Api *api = f->api;
  if (why && why_len) why[0] = '\0';
  if (!API_HAS(api, XLA_FFI_DeviceMemory_Allocate)) {
    if (why && why_len) snprintf(why, why_len, "this runtime's FFI allocates no device memory");
    return NULL;
  }
  XLA_FFI_DeviceMemory_Allocate_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_DeviceMemory_Allocate_Args_STRUCT_SIZE;
  a.ctx = f->ctx;
  a.size = bytes;
  /* XLA refuses any alignment above 16 ("Unsupported alignment", kMaxAlignment in
   * xla/ffi/ffi_api.cc). Its GPU allocators hand out 256-byte aligned chunks anyway (BFC's
   * granule); callers round offsets into a block to 256 as well. */
  a.alignment = 16;
  XLA_FFI_Error *e = api->XLA_FFI_DeviceMemory_Allocate(&a);
  if (e) {
    take_message(api, e, why, why_len);
    return NULL;
  }
  if (!a.data && why && why_len) snprintf(why, why_len, "no memory returned");
  return a.data;
}

void jaxmg__ffi_free(const XLA_FFI_CallFrame *f, void *p, size_t bytes) {
  if (!p) return;
  XLA_FFI_DeviceMemory_Free_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_DeviceMemory_Free_Args_STRUCT_SIZE;
  a.ctx = f->ctx;
  a.size = bytes;
  a.data = p;
  XLA_FFI_Error *e = f->api->XLA_FFI_DeviceMemory_Free(&a);
  if (e) drop_error(f->api, e);
}

XLA_FFI_Future *jaxmg__ffi_future_new(const XLA_FFI_CallFrame *f) {
  const XLA_FFI_Api *api = f->api;
  if (!API_HAS(api, XLA_FFI_Future_Create) || !API_HAS(api, XLA_FFI_Future_SetAvailable) ||
      !API_HAS(api, XLA_FFI_Future_SetError))
    return NULL;
  XLA_FFI_Future_Create_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_Future_Create_Args_STRUCT_SIZE;
  XLA_FFI_Error *e = api->XLA_FFI_Future_Create(&a);
  if (e) {
    drop_error(api, e);
    return NULL;
  }
  return a.future;
}

void jaxmg__ffi_future_done(const XLA_FFI_Api *api, XLA_FFI_Future *fut, const jaxmg_error_t *e) {
  XLA_FFI_Error *r;
  if (e) {
    XLA_FFI_Future_SetError_Args a;
    memset(&a, 0, sizeof a);
    a.struct_size = XLA_FFI_Future_SetError_Args_STRUCT_SIZE;
    a.future = fut;
    a.error = jaxmg__ffi_error(api, e); /* owned by XLA from here */
    r = api->XLA_FFI_Future_SetError(&a);
  } else {
    XLA_FFI_Future_SetAvailable_Args a;
    memset(&a, 0, sizeof a);
    a.struct_size = XLA_FFI_Future_SetAvailable_Args_STRUCT_SIZE;
    a.future = fut;
    r = api->XLA_FFI_Future_SetAvailable(&a);
  }
  if (r) drop_error(api, r);
}

/* ---- call instances ------------------------------------------------------------------------
 * The State calls took their current form (an execution stage in XLA_FFI_State_Set_Args and
 * XLA_FFI_State_Get_Args, the state's deleter in XLA_FFI_TypeInfo given at type registration)
 * in FFI API 0.3; older headers and runtimes lay these structs out differently, so the
 * feature is compiled only against a header of API >= 0.3 and used only with a runtime that
 * announces >= 0.3 (a newer runtime accepts the 0.3 structs by their struct_size). */
#if XLA_FFI_API_MAJOR == 0 && XLA_FFI_API_MINOR >= 3
#define JAXMG_HAVE_FFI_STATE 1
#else
#define JAXMG_HAVE_FFI_STATE 0
#endif

static atomic_llong g_instances;  /* states XLA took */

int64_t jaxmg_ffi_instances(void) { return (int64_t)atomic_load(&g_instances); }

#if JAXMG_HAVE_FFI_STATE
typedef struct {
  int64_t id;
} instance_t;

static void instance_free(void *p) { free(p); }

static atomic_llong g_next_id;  /* ids drawn so far */

static pthread_mutex_t g_type_mu = PTHREAD_MUTEX_INITIALIZER;
static XLA_FFI_TypeId g_type;   /* the state's type id, once registered */
static int g_type_state;        /* 0: not tried, 1: registered, -1: registration failed */

static int state_api(const XLA_FFI_Api *api) {
  return api->api_version.major_version == 0 && api->api_version.minor_version >= 3 &&
         API_HAS(api, XLA_FFI_Type_Register) && API_HAS(api, XLA_FFI_State_Set) &&
         API_HAS(api, XLA_FFI_State_Get);
}

/* Registers the state type once per process; 1 when it is registered. */
static int register_type(const XLA_FFI_Api *api, const char *platform) {
  static char name[48];
  static XLA_FFI_TypeInfo info;
  pthread_mutex_lock(&g_type_mu);
  if (g_type_state == 0) {
    snprintf(name, sizeof name, "jaxmg_instance_%s", platform ? platform : "any");
    memset(&info, 0, sizeof info);
    info.struct_size = XLA_FFI_TypeInfo_STRUCT_SIZE;
    info.deleter = instance_free;
    XLA_FFI_Type_Register_Args a;
    memset(&a, 0, sizeof a);
    a.struct_size = XLA_FFI_Type_Register_Args_STRUCT_SIZE;
    a.name.ptr = name;
    a.name.len = strlen(name);
    g_type.type_id = 0; /* XLA_FFI_UNKNOWN_TYPE_ID: XLA assigns one */
    a.type_id = &g_type;
    a.type_info = &info;
    XLA_FFI_Error *e = api->XLA_FFI_Type_Register(&a);
    if (e) drop_error(api, e);
    g_type_state = (e || g_type.type_id == 0) ? -1 : 1;
  }
  int ok = g_type_state == 1;
  pthread_mutex_unlock(&g_type_mu);
  return ok;
}

void jaxmg__ffi_instantiate(XLA_FFI_CallFrame *f, const char *platform) {
  const XLA_FFI_Api *api = f->api;
  if (!state_api(api) || !register_type(api, platform)) return;
  instance_t *inst = malloc(sizeof *inst);
  if (!inst) return;
  inst->id = (int64_t)atomic_fetch_add(&g_next_id, 1) + 1;
  XLA_FFI_State_Set_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_State_Set_Args_STRUCT_SIZE;
  a.ctx = f->ctx;
  a.stage = XLA_FFI_ExecutionStage_INSTANTIATE;
  a.type_id = &g_type;
  a.state = inst;
  XLA_FFI_Error *e = api->XLA_FFI_State_Set(&a);
  if (e) {
    drop_error(api, e);
    free(inst);
    return;
  }
  atomic_fetch_add(&g_instances, 1);
}

int64_t jaxmg__ffi_instance(const XLA_FFI_CallFrame *f) {
  const XLA_FFI_Api *api = f->api;
  /* Asked only once XLA took a state from this library: where the runtime never ran our
   * INSTANTIATE stage, its executions may keep no instantiation state to look into. */
  if (!atomic_load(&g_instances) || !state_api(api)) return 0;
  XLA_FFI_State_Get_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_State_Get_Args_STRUCT_SIZE;
  a.ctx = f->ctx;
  a.stage = XLA_FFI_ExecutionStage_INSTANTIATE;
  a.type_id = &g_type;
  XLA_FFI_Error *e = api->XLA_FFI_State_Get(&a);
  if (e) { /* this call was compiled without our INSTANTIATE stage */
    drop_error(api, e);
    return 0;
  }
  const instance_t *inst = a.state;
  return inst ? inst->id : 0;
}
#else
void jaxmg__ffi_instantiate(XLA_FFI_CallFrame *f, const char *platform) { (void)f, (void)platform; }

int64_t jaxmg__ffi_instance(const XLA_FFI_CallFrame *f) {
  (void)f;
  return 0;
}
#endif

int jaxmg__ffi_executes(XLA_FFI_CallFrame *f) {
  if (jaxmg__ffi_metadata(f)) return 0;
  return f->stage == XLA_FFI_ExecutionStage_EXECUTE;
}
