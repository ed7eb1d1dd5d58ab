/* xent._fast: the per-call path of the array API in C.
 *
 * For the common calls (numpy arrays or torch CPU tensors whose rows are
 * addressable in place, index targets, no class weights) this does what
 * _api.py does -- view the operands, fill the argument struct, call libxent
 * with the GIL released, wrap the results -- in about a microsecond instead
 * of the tens of microseconds of the Python + ctypes path, which dominate
 * small calls (evaluation, decoding: B x V ~ 32000 logits).
 *
 * It calls nothing but libxent's C ABI, and only the library that _lib.py
 * loaded (the functions are looked up with dlsym in that handle, so
 * XENT_LIBRARY and the bundled / system search apply unchanged). Every
 * function returns NotImplemented for anything outside the common case (other
 * array types, layouts needing a copy, class weights, ...) and for every
 * error status: _api.py then runs its general path, which copies, converts
 * and raises the exception with libxent's message (the C ABI writes nothing
 * when it rejects its arguments). So this module never changes a result or
 * a message, only how fast the common case gets there. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include "xent/xent.h"

#define MAX_DIMS 16

typedef xent_status (*ce_fn)(const xent_cross_entropy_args*);
typedef xent_status (*ce_init_fn)(xent_cross_entropy_args*, size_t);
typedef xent_status (*tlp_fn)(const xent_token_logprobs_args*);
typedef xent_status (*tlp_init_fn)(xent_token_logprobs_args*, size_t);
typedef xent_status (*sm_fn)(const xent_softmax_args*);
typedef xent_status (*sm_init_fn)(xent_softmax_args*, size_t);

static struct {
  int bound;
  ce_fn cross_entropy;
  tlp_fn token_logprobs;
  sm_fn softmax;
  xent_cross_entropy_args ce0;
  xent_token_logprobs_args tlp0;
  xent_softmax_args sm0;
  PyObject* ndarray;     /* numpy.ndarray */
  PyObject* empty;       /* _arrays.empty(kind, shape, code) -> (array, address): large results */
  PyObject* scalar;      /* _arrays.scalar(kind, value) */
  PyObject* np_empty;    /* numpy.empty: small results */
  PyObject* np_float32;  /* numpy.float32: reduced numpy losses */
  PyObject* npdtypes[6]; /* numpy dtype per xent code (Py_None where numpy has none) */
  Py_ssize_t threshold;  /* results of at least this many bytes go through `empty` */
  PyObject* tensor;      /* torch.Tensor (NULL until torch is bound) */
  PyObject* strided;     /* torch.strided */
  PyObject* t_empty;     /* torch.empty */
  PyObject* tdtypes[6];  /* torch dtype per xent code (index = code) */
  PyObject* tkwargs[6];  /* {"dtype": torch dtype} per xent code */
  PyObject *s_mean, *s_sum, *s_none, *s_inplace, *s_numpy, *s_torch;
  PyObject *s_data_ptr, *s_stride, *s_shape, *s_dtype, *s_layout, *s_is_cpu;
} S;

/* A valid address for empty operands (the C ABI wants non-NULL pointers for
 * required operands even when B = 0; numpy and torch may give NULL). */
static double empty_dummy[1];

/* An operand seen as memory. */
typedef struct {
  int torch; /* 0: numpy, 1: torch */
  PyObject* obj;
  char* ptr;
  int code; /* XENT_F32 ... XENT_I64, 0 = none */
  int ndim;
  Py_ssize_t shape[MAX_DIMS];
  Py_ssize_t strides[MAX_DIMS]; /* elements */
  int writable;
  int has_buf;
  Py_buffer buf;
} Operand;

static void release(Operand* a) {
  if (a->has_buf) {
    PyBuffer_Release(&a->buf);
    a->has_buf = 0;
  }
}

static int code_of_format(const char* f, Py_ssize_t itemsize) {
  if (f == NULL) return 0;
  if (*f == '<' || *f == '=' || *f == '@') ++f;
  if (f[0] == '\0' || f[1] != '\0') return 0;
  switch (f[0]) {
    case 'f': return itemsize == 4 ? XENT_F32 : 0;
    case 'e': return itemsize == 2 ? XENT_F16 : 0;
    case 'i': return itemsize == 4 ? XENT_I32 : 0;
    case 'l':
    case 'q': return itemsize == 8 ? XENT_I64 : (itemsize == 4 ? XENT_I32 : 0);
    default: return 0;
  }
}

/* Fills `a` from a numpy array or a torch CPU tensor. Returns 1 when
 * handled, 0 when not (no Python exception left set). */
static int operand(PyObject* o, Operand* a) {
  memset(a, 0, sizeof(*a));
  a->obj = o;
  if (Py_TYPE(o) == (PyTypeObject*)S.ndarray) {
    if (PyObject_GetBuffer(o, &a->buf, PyBUF_RECORDS_RO) != 0) {
      PyErr_Clear();
      return 0;
    }
    a->has_buf = 1;
    a->code = code_of_format(a->buf.format, a->buf.itemsize);
    if (a->code == 0 || a->buf.ndim > MAX_DIMS) goto no;
    a->ndim = a->buf.ndim;
    for (int i = 0; i < a->ndim; ++i) {
      a->shape[i] = a->buf.shape[i];
      if (a->buf.strides[i] % a->buf.itemsize != 0) goto no;
      a->strides[i] = a->buf.strides[i] / a->buf.itemsize;
    }
    a->ptr = (char*)a->buf.buf;
    a->writable = !a->buf.readonly;
    return 1;
  }
  if (S.tensor == NULL || !PyObject_TypeCheck(o, (PyTypeObject*)S.tensor)) return 0;
  a->torch = 1;
  a->writable = 1;
  PyObject *v = NULL, *shape = NULL, *strides = NULL;
  v = PyObject_GetAttr(o, S.s_is_cpu);
  if (v == NULL || v != Py_True) goto torch_no;
  Py_DECREF(v);
  v = PyObject_GetAttr(o, S.s_layout);
  if (v == NULL || v != S.strided) goto torch_no;
  Py_DECREF(v);
  v = PyObject_GetAttr(o, S.s_dtype);
  if (v == NULL) goto torch_no;
  for (int c = XENT_F32; c <= XENT_I64; ++c)
    if (v == S.tdtypes[c]) a->code = c;
  Py_DECREF(v);
  v = NULL;
  if (a->code == 0) goto torch_no;
  shape = PyObject_GetAttr(o, S.s_shape);
  strides = PyObject_CallMethodObjArgs(o, S.s_stride, NULL);
  if (shape == NULL || strides == NULL || !PyTuple_Check(shape) || !PyTuple_Check(strides)) goto torch_no;
  a->ndim = (int)PyTuple_GET_SIZE(shape);
  if (a->ndim > MAX_DIMS || PyTuple_GET_SIZE(strides) != a->ndim) goto torch_no;
  for (int i = 0; i < a->ndim; ++i) {
    a->shape[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, i));
    a->strides[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(strides, i));
  }
  if (PyErr_Occurred()) goto torch_no;
  Py_CLEAR(shape);
  Py_CLEAR(strides);
  v = PyObject_CallMethodObjArgs(o, S.s_data_ptr, NULL);
  if (v == NULL) goto torch_no;
  a->ptr = (char*)PyLong_AsVoidPtr(v);
  Py_DECREF(v);
  if (PyErr_Occurred()) {
    PyErr_Clear();
    return 0;
  }
  return 1;
torch_no:
  Py_XDECREF(v);
  Py_XDECREF(shape);
  Py_XDECREF(strides);
  PyErr_Clear();
  return 0;
no:
  release(a);
  return 0;
}

/* Element stride between consecutive items of dims [0, n) flattened; 0 when
 * they hold at most one item; -1 when they do not collapse (as
 * _arrays._collapse). */
static Py_ssize_t collapse(const Py_ssize_t* shape, const Py_ssize_t* strides, int n) {
  int idx[MAX_DIMS], m = 0;
  for (int i = 0; i < n; ++i) {
    if (shape[i] == 0) return 0;
    if (shape[i] != 1) idx[m++] = i;
  }
  if (m == 0) return 0;
  for (int k = 0; k + 1 < m; ++k)
    if (strides[idx[k]] != strides[idx[k + 1]] * shape[idx[k + 1]]) return -1;
  return strides[idx[m - 1]];
}

/* An operand as rows x cols with classes on the last axis, addressable in
 * place (as _arrays.matrix without a copy). */
typedef struct {
  Py_ssize_t rows, cols, stride;
  char* ptr;
} Mat;

static int as_matrix(const Operand* a, Mat* m) {
  if (a->code != XENT_F32 && a->code != XENT_BF16 && a->code != XENT_F16) return 0;
  Py_ssize_t one = 1;
  const Py_ssize_t* shape = a->ndim ? a->shape : &one;
  const Py_ssize_t* strides = a->ndim ? a->strides : &one;
  int nd = a->ndim ? a->ndim : 1;
  Py_ssize_t cols = shape[nd - 1], rows = 1;
  for (int i = 0; i < nd - 1; ++i) rows *= shape[i];
  if (!(cols <= 1 || rows == 0 || strides[nd - 1] == 1)) return 0;
  Py_ssize_t stride = cols;
  if (rows > 1 && cols > 0) {
    Py_ssize_t r = collapse(shape, strides, nd - 1);
    if (r < 0 || r < cols) return 0;
    if (r != 0) stride = r;
  }
  m->rows = rows;
  m->cols = cols;
  m->stride = stride;
  m->ptr = a->ptr ? a->ptr : (rows * cols == 0 ? (char*)empty_dummy : NULL);
  return m->ptr != NULL;
}

/* Class indices with exactly the leading shape of `like` (as _arrays.indices
 * without a conversion). Returns the element stride, or -1. */
static Py_ssize_t as_indices(const Operand* t, const Operand* like, char** ptr) {
  if (t->code != XENT_I32 && t->code != XENT_I64) return -1;
  int lead = like->ndim > 0 ? like->ndim - 1 : 0;
  if (t->ndim != lead) return -1;
  Py_ssize_t n = 1;
  for (int i = 0; i < lead; ++i) {
    if (t->shape[i] != like->shape[i]) return -1;
    n *= t->shape[i];
  }
  Py_ssize_t r = t->ndim ? collapse(t->shape, t->strides, t->ndim) : 0;
  if (r < 0 || (r <= 0 && n > 1)) return -1;
  *ptr = t->ptr ? t->ptr : (n == 0 ? (char*)empty_dummy : NULL);
  if (*ptr == NULL) return -1;
  return n > 1 ? r : 1;
}

static PyObject* shape_tuple(const Operand* a, int dims) {
  PyObject* s = PyTuple_New(dims);
  if (s == NULL) return NULL;
  for (int i = 0; i < dims; ++i) {
    PyObject* d = PyLong_FromSsize_t(a->shape[i]);
    if (d == NULL) {
      Py_DECREF(s);
      return NULL;
    }
    PyTuple_SET_ITEM(s, i, d);
  }
  return s;
}

static Py_ssize_t itemsize_of(int code) { return code == XENT_F32 || code == XENT_I32 ? 4 : code == XENT_I64 ? 8 : 2; }

/* A small result straight from numpy.empty / torch.empty (no Python frame). */
static PyObject* new_small(int torch, PyObject* shape, int code, void** addr) {
  PyObject* arr;
  if (torch) {
    PyObject* args = PyTuple_Pack(1, shape);
    if (args == NULL) return NULL;
    arr = PyObject_Call(S.t_empty, args, S.tkwargs[code]);
    Py_DECREF(args);
    if (arr == NULL) return NULL;
    PyObject* p = PyObject_CallMethodObjArgs(arr, S.s_data_ptr, NULL);
    if (p == NULL) {
      Py_DECREF(arr);
      return NULL;
    }
    *addr = PyLong_AsVoidPtr(p);
    Py_DECREF(p);
  } else {
    arr = PyObject_CallFunctionObjArgs(S.np_empty, shape, S.npdtypes[code], NULL);
    if (arr == NULL) return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(arr, &b, PyBUF_WRITABLE) != 0) {
      Py_DECREF(arr);
      return NULL;
    }
    *addr = b.buf;
    PyBuffer_Release(&b);
  }
  if (PyErr_Occurred()) {
    Py_DECREF(arr);
    return NULL;
  }
  if (*addr == NULL) *addr = empty_dummy; /* an empty array */
  return arr;
}

/* A new result array (small: numpy / torch directly; large: _arrays.empty,
 * xent's recycled buffers); *addr receives its data address. */
static PyObject* new_array(int torch, const Operand* like, int dims, int code, void** addr) {
  PyObject* shape = shape_tuple(like, dims);
  if (shape == NULL) return NULL;
  Py_ssize_t n = itemsize_of(code);
  for (int i = 0; i < dims; ++i) n *= like->shape[i];
  if (n < S.threshold && (torch ? S.tkwargs[code] != NULL : S.npdtypes[code] != Py_None)) {
    PyObject* arr = new_small(torch, shape, code, addr);
    Py_DECREF(shape);
    return arr;
  }
  PyObject* r = PyObject_CallFunction(S.empty, "OOi", torch ? S.s_torch : S.s_numpy, shape, code);
  Py_DECREF(shape);
  if (r == NULL) return NULL;
  if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
    Py_DECREF(r);
    PyErr_SetString(PyExc_SystemError, "xent._fast: _arrays.empty returned an unexpected value");
    return NULL;
  }
  PyObject* arr = PyTuple_GET_ITEM(r, 0);
  *addr = PyLong_AsVoidPtr(PyTuple_GET_ITEM(r, 1));
  Py_INCREF(arr);
  Py_DECREF(r);
  if (*addr == NULL) {
    PyErr_Clear();
    *addr = empty_dummy; /* an empty array */
  }
  return arr;
}

static PyObject* reduced(int torch, float value) {
  if (!torch) return PyObject_CallFunction(S.np_float32, "d", (double)value);
  return PyObject_CallFunction(S.scalar, "Od", S.s_torch, (double)value);
}

static int get_float(PyObject* o, float* out) {
  double d = PyFloat_AsDouble(o);
  if (d == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return 0;
  }
  *out = (float)d;
  return 1;
}

static int get_threads(PyObject* o, int32_t* out) {
  long n = PyLong_AsLong(o);
  if (n == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return 0;
  }
  if (n < 0 || n > INT32_MAX) return 0;
  *out = (int32_t)n;
  return 1;
}

#define NOT_HANDLED() \
  do {                \
    ok = 0;           \
    goto done;        \
  } while (0)

/* cross_entropy(logits, target, ignore_index, reduction, label_smoothing,
 *               z_loss, softcap, grad, grad_scale, num_threads)
 * softcap: None or a number; grad: None/False, True, "inplace" or an array. */
static PyObject* fast_cross_entropy(PyObject* self, PyObject* args) {
  (void)self;
  PyObject *logits, *target, *ignore_o, *red_o, *ls_o, *zl_o, *cap_o, *grad_o, *gs_o, *thr_o;
  if (!PyArg_UnpackTuple(args, "cross_entropy", 10, 10, &logits, &target, &ignore_o, &red_o, &ls_o, &zl_o, &cap_o,
                         &grad_o, &gs_o, &thr_o))
    return NULL;
  if (!S.bound) Py_RETURN_NOTIMPLEMENTED;
  Operand x, t, go;
  memset(&t, 0, sizeof(t));
  memset(&go, 0, sizeof(go));
  PyObject *rl = NULL, *g = NULL, *result = NULL;
  int ok = 1;
  if (!operand(logits, &x)) Py_RETURN_NOTIMPLEMENTED;
  Mat m;
  if (!as_matrix(&x, &m)) NOT_HANDLED();
  if (!operand(target, &t)) NOT_HANDLED();
  char* tptr = NULL;
  Py_ssize_t tstride = as_indices(&t, &x, &tptr);
  if (tstride < 0) NOT_HANDLED();

  xent_cross_entropy_args a = S.ce0;
  a.batch = (size_t)m.rows;
  a.num_classes = (size_t)m.cols;
  a.logits = m.ptr;
  a.logits_stride = (size_t)m.stride;
  a.logits_dtype = x.code;
  a.target = tptr;
  a.target_stride = (size_t)tstride;
  a.target_dtype = t.code;
  a.ignore_index = PyLong_AsLongLong(ignore_o);
  if (a.ignore_index == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    NOT_HANDLED();
  }
  if (PyUnicode_Check(red_o) && PyUnicode_Compare(red_o, S.s_mean) == 0)
    a.reduction = XENT_REDUCTION_MEAN;
  else if (PyUnicode_Check(red_o) && PyUnicode_Compare(red_o, S.s_sum) == 0)
    a.reduction = XENT_REDUCTION_SUM;
  else if (PyUnicode_Check(red_o) && PyUnicode_Compare(red_o, S.s_none) == 0)
    a.reduction = XENT_REDUCTION_NONE;
  else
    NOT_HANDLED();
  if (!get_float(ls_o, &a.label_smoothing) || !get_float(zl_o, &a.z_loss) || !get_float(gs_o, &a.grad_scale))
    NOT_HANDLED();
  if (cap_o == Py_None)
    a.softcap = 0.0f;
  else if (!get_float(cap_o, &a.softcap))
    NOT_HANDLED();
  if (!get_threads(thr_o, &a.num_threads)) NOT_HANDLED();
  float loss = 0.0f;
  a.loss = &loss;
  void* addr;
  if (x.torch && a.reduction != XENT_REDUCTION_NONE) {
    /* a 0-d tensor the kernel writes into (cheaper than torch.tensor(value)) */
    rl = new_array(1, &x, 0, XENT_F32, &addr);
    if (rl == NULL) goto error;
    a.loss = (float*)addr;
  } else if (a.reduction == XENT_REDUCTION_NONE) {
    rl = new_array(x.torch, &x, x.ndim > 0 ? x.ndim - 1 : 0, XENT_F32, &addr);
    if (rl == NULL) goto error;
    a.row_loss = (float*)addr;
  }
  if (grad_o == Py_True) {
    g = new_array(x.torch, &x, x.ndim, x.code, &addr);
    if (g == NULL) goto error;
    a.grad = addr;
  } else if (PyUnicode_Check(grad_o)) {
    if (PyUnicode_Compare(grad_o, S.s_inplace) != 0 || !x.writable) NOT_HANDLED();
    g = logits;
    Py_INCREF(g);
    a.grad = m.ptr;
    a.grad_stride = (size_t)m.stride;
    a.grad_dtype = x.code;
  } else if (grad_o != Py_None && grad_o != Py_False) {
    Mat gm;
    if (!operand(grad_o, &go) || !go.writable || go.ndim != x.ndim || !as_matrix(&go, &gm)) NOT_HANDLED();
    for (int i = 0; i < x.ndim; ++i)
      if (go.shape[i] != x.shape[i]) NOT_HANDLED();
    g = grad_o;
    Py_INCREF(g);
    a.grad = gm.ptr;
    a.grad_stride = (size_t)gm.stride;
    a.grad_dtype = go.code;
  }
  xent_status st;
  Py_BEGIN_ALLOW_THREADS st = S.cross_entropy(&a);
  Py_END_ALLOW_THREADS if (st != XENT_OK) NOT_HANDLED();
  PyObject* out = rl;
  if (out == NULL) {
    out = reduced(x.torch, loss);
    if (out == NULL) goto error;
  } else {
    Py_INCREF(out);
  }
  if (g != NULL) {
    result = PyTuple_Pack(2, out, g);
    Py_DECREF(out);
  } else {
    result = out;
  }
  goto done;
error:
  ok = 1;
  result = NULL;
done:
  release(&x);
  release(&t);
  release(&go);
  Py_XDECREF(rl);
  Py_XDECREF(g);
  if (!ok) {
    Py_XDECREF(result);
    Py_RETURN_NOTIMPLEMENTED;
  }
  return result;
}

/* token_logprobs(logits, target, entropy, temperature, softcap, ignore_index, num_threads) */
static PyObject* fast_token_logprobs(PyObject* self, PyObject* args) {
  (void)self;
  PyObject *logits, *target, *ent_o, *temp_o, *cap_o, *ignore_o, *thr_o;
  if (!PyArg_UnpackTuple(args, "token_logprobs", 7, 7, &logits, &target, &ent_o, &temp_o, &cap_o, &ignore_o, &thr_o))
    return NULL;
  if (!S.bound) Py_RETURN_NOTIMPLEMENTED;
  Operand x, t;
  memset(&t, 0, sizeof(t));
  PyObject *lp = NULL, *ent = NULL, *result = NULL;
  int ok = 1;
  if (!operand(logits, &x)) Py_RETURN_NOTIMPLEMENTED;
  Mat m;
  if (!as_matrix(&x, &m)) NOT_HANDLED();
  if (!operand(target, &t)) NOT_HANDLED();
  char* tptr = NULL;
  Py_ssize_t tstride = as_indices(&t, &x, &tptr);
  if (tstride < 0) NOT_HANDLED();
  xent_token_logprobs_args a = S.tlp0;
  a.batch = (size_t)m.rows;
  a.num_classes = (size_t)m.cols;
  a.logits = m.ptr;
  a.logits_stride = (size_t)m.stride;
  a.logits_dtype = x.code;
  a.target = tptr;
  a.target_stride = (size_t)tstride;
  a.target_dtype = t.code;
  a.ignore_index = PyLong_AsLongLong(ignore_o);
  if (a.ignore_index == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    NOT_HANDLED();
  }
  if (!get_float(temp_o, &a.temperature)) NOT_HANDLED();
  if (cap_o == Py_None)
    a.softcap = 0.0f;
  else if (!get_float(cap_o, &a.softcap))
    NOT_HANDLED();
  if (!get_threads(thr_o, &a.num_threads)) NOT_HANDLED();
  int want_ent = PyObject_IsTrue(ent_o);
  if (want_ent < 0) {
    PyErr_Clear();
    NOT_HANDLED();
  }
  int lead = x.ndim > 0 ? x.ndim - 1 : 0;
  void* addr;
  lp = new_array(x.torch, &x, lead, XENT_F32, &addr);
  if (lp == NULL) goto error;
  a.logprob = (float*)addr;
  if (want_ent) {
    ent = new_array(x.torch, &x, lead, XENT_F32, &addr);
    if (ent == NULL) goto error;
    a.entropy = (float*)addr;
  }
  xent_status st;
  Py_BEGIN_ALLOW_THREADS st = S.token_logprobs(&a);
  Py_END_ALLOW_THREADS if (st != XENT_OK) NOT_HANDLED();
  if (want_ent) {
    result = PyTuple_Pack(2, lp, ent);
  } else {
    result = lp;
    Py_INCREF(result);
  }
  goto done;
error:
  result = NULL;
done:
  release(&x);
  release(&t);
  Py_XDECREF(lp);
  Py_XDECREF(ent);
  if (!ok) {
    Py_XDECREF(result);
    Py_RETURN_NOTIMPLEMENTED;
  }
  return result;
}

/* softmax(x, log, temperature, num_threads): probabilities (log: log-probs)
 * over the last axis into a new array like x. */
static PyObject* fast_softmax(PyObject* self, PyObject* args) {
  (void)self;
  PyObject *in, *log_o, *temp_o, *thr_o;
  if (!PyArg_UnpackTuple(args, "softmax", 4, 4, &in, &log_o, &temp_o, &thr_o)) return NULL;
  if (!S.bound) Py_RETURN_NOTIMPLEMENTED;
  Operand x;
  PyObject *y = NULL, *result = NULL;
  int ok = 1;
  if (!operand(in, &x)) Py_RETURN_NOTIMPLEMENTED;
  Mat m;
  if (x.ndim == 0 || !as_matrix(&x, &m)) NOT_HANDLED();
  xent_softmax_args a = S.sm0;
  a.batch = (size_t)m.rows;
  a.num_classes = (size_t)m.cols;
  a.logits = m.ptr;
  a.logits_stride = (size_t)m.stride;
  a.logits_dtype = x.code;
  if (!get_float(temp_o, &a.temperature)) NOT_HANDLED();
  if (!get_threads(thr_o, &a.num_threads)) NOT_HANDLED();
  void* addr;
  y = new_array(x.torch, &x, x.ndim, x.code, &addr);
  if (y == NULL) goto error;
  if (PyObject_IsTrue(log_o)) {
    a.log_probs = addr;
    a.log_probs_dtype = x.code;
  } else {
    a.probs = addr;
    a.probs_dtype = x.code;
  }
  xent_status st;
  Py_BEGIN_ALLOW_THREADS st = S.softmax(&a);
  Py_END_ALLOW_THREADS if (st != XENT_OK) NOT_HANDLED();
  result = y;
  Py_INCREF(result);
  goto done;
error:
  result = NULL;
done:
  release(&x);
  Py_XDECREF(y);
  if (!ok) {
    Py_XDECREF(result);
    Py_RETURN_NOTIMPLEMENTED;
  }
  return result;
}

static void* sym(void* handle, const char* name) {
  void* p = dlsym(handle, name);
  if (p == NULL) PyErr_Format(PyExc_ImportError, "xent._fast: %s is not in the loaded libxent", name);
  return p;
}

/* bind(handle, ndarray, empty, scalar, threshold, np_empty, np_float32, np_dtypes):
 * the dlopen handle of the libxent that _lib.py loaded (ctypes.CDLL._handle),
 * numpy.ndarray, the allocation helpers of _arrays and the size from which
 * results come from `empty`, numpy.empty, numpy.float32 and the numpy dtypes
 * of (f32, bf16, f16) (None where numpy has none). */
static PyObject* fast_bind(PyObject* self, PyObject* args) {
  (void)self;
  PyObject *handle_o, *ndarray, *empty, *scalar, *thr_o, *np_empty, *np_float32, *npd;
  if (!PyArg_UnpackTuple(args, "bind", 8, 8, &handle_o, &ndarray, &empty, &scalar, &thr_o, &np_empty, &np_float32,
                         &npd))
    return NULL;
  Py_ssize_t threshold = PyLong_AsSsize_t(thr_o);
  if (threshold == -1 && PyErr_Occurred()) return NULL;
  if (!PyTuple_Check(npd) || PyTuple_GET_SIZE(npd) != 3) {
    PyErr_SetString(PyExc_TypeError, "bind: np_dtypes must be (f32, bf16, f16)");
    return NULL;
  }
  void* h = PyLong_AsVoidPtr(handle_o);
  if (h == NULL && PyErr_Occurred()) return NULL;
  ce_init_fn ce_init = (ce_init_fn)sym(h, "xent_cross_entropy_args_init");
  ce_fn ce = (ce_fn)sym(h, "xent_cross_entropy");
  tlp_init_fn tlp_init = (tlp_init_fn)sym(h, "xent_token_logprobs_args_init");
  tlp_fn tlp = (tlp_fn)sym(h, "xent_token_logprobs");
  sm_init_fn sm_init = (sm_init_fn)sym(h, "xent_softmax_args_init");
  sm_fn sm = (sm_fn)sym(h, "xent_softmax");
  if (!ce_init || !ce || !tlp_init || !tlp || !sm_init || !sm) return NULL;
  if (ce_init(&S.ce0, sizeof(S.ce0)) != XENT_OK || tlp_init(&S.tlp0, sizeof(S.tlp0)) != XENT_OK ||
      sm_init(&S.sm0, sizeof(S.sm0)) != XENT_OK) {
    PyErr_SetString(PyExc_ImportError, "xent._fast: the loaded libxent rejected an *_args_init");
    return NULL;
  }
  S.cross_entropy = ce;
  S.token_logprobs = tlp;
  S.softmax = sm;
  Py_INCREF(ndarray);
  Py_XSETREF(S.ndarray, ndarray);
  Py_INCREF(empty);
  Py_XSETREF(S.empty, empty);
  Py_INCREF(scalar);
  Py_XSETREF(S.scalar, scalar);
  Py_INCREF(np_empty);
  Py_XSETREF(S.np_empty, np_empty);
  Py_INCREF(np_float32);
  Py_XSETREF(S.np_float32, np_float32);
  static const int codes[3] = {XENT_F32, XENT_BF16, XENT_F16};
  for (int c = 0; c < 6; ++c) {
    Py_INCREF(Py_None);
    Py_XSETREF(S.npdtypes[c], Py_None);
  }
  for (int i = 0; i < 3; ++i) {
    PyObject* d = PyTuple_GET_ITEM(npd, i);
    Py_INCREF(d);
    Py_XSETREF(S.npdtypes[codes[i]], d);
  }
  S.threshold = threshold;
  S.bound = 1;
  Py_RETURN_NONE;
}

/* bind_torch(Tensor, strided, (float32, bfloat16, float16, int32, int64), torch.empty) */
static PyObject* fast_bind_torch(PyObject* self, PyObject* args) {
  (void)self;
  PyObject *tensor, *strided, *dtypes, *t_empty;
  if (!PyArg_UnpackTuple(args, "bind_torch", 4, 4, &tensor, &strided, &dtypes, &t_empty)) return NULL;
  if (!PyType_Check(tensor) || !PyTuple_Check(dtypes) || PyTuple_GET_SIZE(dtypes) != 5) {
    PyErr_SetString(PyExc_TypeError, "bind_torch(Tensor, strided, (f32, bf16, f16, i32, i64), empty)");
    return NULL;
  }
  static const int codes[5] = {XENT_F32, XENT_BF16, XENT_F16, XENT_I32, XENT_I64};
  for (int i = 0; i < 5; ++i) {
    PyObject* d = PyTuple_GET_ITEM(dtypes, i);
    Py_INCREF(d);
    Py_XSETREF(S.tdtypes[codes[i]], d);
    PyObject* kw = Py_BuildValue("{s:O}", "dtype", d);
    if (kw == NULL) return NULL;
    Py_XSETREF(S.tkwargs[codes[i]], kw);
  }
  Py_INCREF(t_empty);
  Py_XSETREF(S.t_empty, t_empty);
  Py_INCREF(strided);
  Py_XSETREF(S.strided, strided);
  Py_INCREF(tensor);
  Py_XSETREF(S.tensor, tensor);
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", fast_bind, METH_VARARGS,
     "bind(handle, ndarray, empty, scalar, threshold, np_empty, np_float32, np_dtypes)"},
    {"bind_torch", fast_bind_torch, METH_VARARGS, "bind_torch(Tensor, strided, dtypes, empty)"},
    {"cross_entropy", fast_cross_entropy, METH_VARARGS,
     "cross_entropy(logits, target, ignore_index, reduction, label_smoothing, z_loss, softcap, grad, grad_scale, "
     "num_threads) -> result, or NotImplemented (then use the general path)"},
    {"token_logprobs", fast_token_logprobs, METH_VARARGS,
     "token_logprobs(logits, target, entropy, temperature, softcap, ignore_index, num_threads)"},
    {"softmax", fast_softmax, METH_VARARGS, "softmax(x, log, temperature, num_threads)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_fast",
    "The per-call path of xent's array API in C (see _fast.c).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__fast(void) {
  PyObject* mod = PyModule_Create(&module);
  if (mod == NULL) return NULL;
#define INTERN(field, text)                                   \
  if ((S.field = PyUnicode_InternFromString(text)) == NULL) { \
    Py_DECREF(mod);                                           \
    return NULL;                                              \
  }
  INTERN(s_mean, "mean");
  INTERN(s_sum, "sum");
  INTERN(s_none, "none");
  INTERN(s_inplace, "inplace");
  INTERN(s_numpy, "numpy");
  INTERN(s_torch, "torch");
  INTERN(s_data_ptr, "data_ptr");
  INTERN(s_stride, "stride");
  INTERN(s_shape, "shape");
  INTERN(s_dtype, "dtype");
  INTERN(s_layout, "layout");
  INTERN(s_is_cpu, "is_cpu");
#undef INTERN
  return mod;
}
