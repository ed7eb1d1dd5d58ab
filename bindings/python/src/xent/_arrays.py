"""Array adaptation: numpy arrays, torch CPU tensors, DLPack producers and
buffer-protocol objects, seen as B x V matrices (classes on the last axis)
without copying whenever the layout allows it.

A layout is zero-copy when the last axis has unit stride and the leading axes
collapse into one row stride >= V (any C-contiguous array, a slice of rows,
a slice of columns, a view with padded rows, ...). Inputs in any other layout
are copied; outputs in any other layout are an error.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import POINTER, Structure, c_char_p, c_int32, c_int64, c_uint8, c_uint16, c_uint64, c_void_p

import numpy as np

from . import _buffers
from . import _lib as L

try:  # optional: numpy bfloat16
    import ml_dtypes as _ml_dtypes

    NP_BF16 = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - depends on the environment
    _ml_dtypes = None
    NP_BF16 = None

_NP_CODES = {
    np.dtype(np.float32): L.XENT_F32,
    np.dtype(np.float16): L.XENT_F16,
    np.dtype(np.int32): L.XENT_I32,
    np.dtype(np.int64): L.XENT_I64,
}
if NP_BF16 is not None:
    _NP_CODES[NP_BF16] = L.XENT_BF16

DTYPE_NAMES = {
    L.XENT_F32: "float32",
    L.XENT_BF16: "bfloat16",
    L.XENT_F16: "float16",
    L.XENT_I32: "int32",
    L.XENT_I64: "int64",
}
FLOAT_CODES = (L.XENT_F32, L.XENT_BF16, L.XENT_F16)
INDEX_CODES = (L.XENT_I32, L.XENT_I64)

_torch_codes = None


def _torch():
    return sys.modules.get("torch")


_torch_hooks = []


def on_torch_import(fn):
    """Calls fn(torch) once torch is in use (now, if it already is)."""
    _torch_hooks.append(fn)
    if _torch_codes is not None:
        fn(_torch())


def _torch_code_map(torch):
    global _torch_codes
    if _torch_codes is None:
        _torch_codes = {
            torch.float32: L.XENT_F32,
            torch.bfloat16: L.XENT_BF16,
            torch.float16: L.XENT_F16,
            torch.int32: L.XENT_I32,
            torch.int64: L.XENT_I64,
        }
        for fn in _torch_hooks:
            fn(torch)
    return _torch_codes


def is_torch(x) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


# ---------------------------------------------------------------------------
# DLPack (legacy unversioned capsules, as every producer returns them when
# __dlpack__ is called without max_version).
class _DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class _DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class _DLTensor(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", _DLDevice),
        ("ndim", c_int32),
        ("dtype", _DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


class _DLManagedTensor(Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


_capsule_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get_pointer.restype = c_void_p
_capsule_get_pointer.argtypes = [ctypes.py_object, c_char_p]
_DL_CPU = 1
# (type code, bits) -> xent dtype. kDLInt = 0, kDLFloat = 2, kDLBfloat = 4.
_DL_CODES = {(2, 32): L.XENT_F32, (2, 16): L.XENT_F16, (4, 16): L.XENT_BF16, (0, 32): L.XENT_I32, (0, 64): L.XENT_I64}


class View:
    """An array-like seen as raw memory: pointer, shape, strides (elements),
    xent dtype code (None when xent has none), element size, and the objects
    to keep alive while the pointer is used."""

    __slots__ = ("obj", "kind", "ptr", "shape", "strides", "code", "itemsize", "writable", "keep", "dtype")

    def __init__(self, obj, kind, ptr, shape, strides, code, itemsize, writable, keep, dtype):
        self.obj = obj
        self.kind = kind  # "numpy" or "torch": the library results are returned in
        self.ptr = ptr
        self.shape = tuple(shape)
        self.strides = tuple(strides)
        self.code = code
        self.itemsize = itemsize
        self.writable = writable
        self.keep = keep
        self.dtype = dtype  # the producer's dtype object (named only in errors)

    @property
    def dtype_name(self):
        return str(self.dtype).replace("torch.", "")


def _numpy_view(a: np.ndarray) -> View:
    dt = a.dtype
    itemsize = dt.itemsize
    code = _NP_CODES.get(dt)  # byte-swapped dtypes compare unequal: no code
    strides = tuple(s // itemsize for s in a.strides)
    if code is None or any(s * itemsize != b for s, b in zip(strides, a.strides)):
        code, strides = None, ()
    return View(
        a, "numpy", a.__array_interface__["data"][0], a.shape, strides, code, itemsize, a.flags.writeable, a, dt
    )


def _torch_view(t) -> View:
    if t.device.type != "cpu":
        raise ValueError("xent runs on CPU tensors; got a tensor on device '%s' (move it with .cpu())" % t.device)
    if t.is_sparse or t.layout != _torch().strided:
        raise TypeError("xent needs a dense (strided) tensor, got layout %s" % t.layout)
    code = _torch_code_map(_torch()).get(t.dtype)
    return View(t, "torch", t.data_ptr(), t.shape, t.stride(), code, t.element_size(), True, t, t.dtype)


def _dlpack_view(x) -> View:
    dev = x.__dlpack_device__()
    if int(dev[0]) != _DL_CPU:
        raise ValueError("xent runs on CPU memory; got a DLPack tensor on device %r" % (tuple(dev),))
    capsule = x.__dlpack__()
    ptr = _capsule_get_pointer(capsule, b"dltensor")
    mt = _DLManagedTensor.from_address(ptr)
    t = mt.dl_tensor
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides:
        strides = tuple(t.strides[i] for i in range(t.ndim))
    else:
        strides, acc = [], 1
        for d in reversed(shape):
            strides.append(acc)
            acc *= d
        strides = tuple(reversed(strides))
    code = _DL_CODES.get((t.dtype.code, t.dtype.bits)) if t.dtype.lanes == 1 else None
    # The capsule's destructor calls the producer's deleter: keep it alive.
    return View(
        x,
        "numpy",
        (t.data or 0) + t.byte_offset,
        shape,
        strides,
        code,
        max(t.dtype.bits // 8, 1),
        True,
        (x, capsule),
        "dlpack(code=%d, bits=%d)" % (t.dtype.code, t.dtype.bits),
    )


def view(x, name: str) -> View:
    if isinstance(x, np.ndarray):
        return _numpy_view(x)
    if is_torch(x):
        return _torch_view(x)
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        return _dlpack_view(x)
    try:
        a = np.asarray(x)  # buffer protocol, __array_interface__, sequences
    except Exception as e:  # noqa: BLE001
        raise TypeError("%s: cannot view %s as an array (%s)" % (name, type(x).__name__, e)) from None
    return _numpy_view(a)


# ---------------------------------------------------------------------------
def _collapse(shape, strides):
    """Element stride between consecutive items of the flattened leading axes,
    0 when there is at most one item, None when they do not collapse."""
    dims = [(d, s) for d, s in zip(shape, strides) if d != 1]
    if any(d == 0 for d, _ in dims) or not dims:
        return 0
    for (_, s0), (d1, s1) in zip(dims, dims[1:]):
        if s0 != s1 * d1:
            return None
    return dims[-1][1]


def _copy_contiguous(v: View, name: str) -> View:
    """A packed copy of a float array xent cannot address in place (in xent's
    buffers when large, see empty())."""
    if v.kind == "torch":
        torch = _torch()
        with torch.no_grad():  # the array API is not differentiable: no graph for the copy
            out, _ = empty("torch", tuple(v.shape), v.code)
            return _torch_view(out.copy_(v.obj))
    if isinstance(v.obj, np.ndarray):
        out, _ = empty("numpy", v.shape, v.code)
        np.copyto(out, v.obj)
        return _numpy_view(out)
    if v.code is None:
        raise TypeError("%s: cannot copy this array (dtype %s)" % (name, v.dtype_name))
    # A DLPack tensor in an odd layout: go through torch when it is torch's,
    # else through numpy (not for bfloat16 without ml_dtypes).
    raise ValueError(
        "%s: a DLPack array whose last axis is not contiguous or whose leading axes do not collapse "
        "into one row stride; pass a contiguous array" % name
    )


# A valid address for empty arrays (torch gives data_ptr() == 0 for them; the
# C ABI wants non-NULL required pointers even when B = 0).
_EMPTY = (ctypes.c_double * 1)()
EMPTY_PTR = ctypes.addressof(_EMPTY)


class Mat:
    """A B x V matrix over an array-like: rows = product of the leading axes,
    cols = the last axis (an 0-d array is one row of one column)."""

    __slots__ = ("v", "shape", "lead", "rows", "cols", "stride", "ptr", "code")

    def __init__(self, v: View, shape, rows, cols, stride):
        self.v = v
        self.shape = shape
        self.lead = shape[:-1]
        self.rows = rows
        self.cols = cols
        self.stride = stride
        self.ptr = v.ptr or (EMPTY_PTR if rows * cols == 0 else 0)
        self.code = v.code


def _dtype_error(name, v, what):
    return TypeError("%s has dtype %s; %s" % (name, v.dtype_name, what))


def _float_dtype_msg():
    return (
        "xent takes float32, float16 or bfloat16 (torch tensors; numpy with ml_dtypes) — "
        "convert with .astype(np.float32) / .float()"
    )


def matrix(x, name: str, *, output: bool = False, allow_copy: bool = True) -> Mat:
    """Views `x` as rows x cols (classes last). Inputs in a layout xent cannot
    address are copied (when allow_copy); outputs must be addressable."""
    v = x if isinstance(x, View) else view(x, name)
    shape = v.shape
    if len(shape) == 0:
        shape_m, strides_m = (1,), (1,)
    else:
        shape_m, strides_m = shape, v.strides
    if v.code not in FLOAT_CODES:
        raise _dtype_error(name, v, _float_dtype_msg())
    if output and not v.writable:
        raise ValueError("%s is read-only" % name)
    cols = shape_m[-1]
    rows = 1
    for d in shape_m[:-1]:
        rows *= d
    ok = len(strides_m) == len(shape_m) and (cols <= 1 or rows == 0 or strides_m[-1] == 1)
    stride = cols
    if ok and rows > 1 and cols > 0:
        r = _collapse(shape_m[:-1], strides_m[:-1])
        if r is None or r < max(cols, 1):
            ok = False
        elif r != 0:
            stride = r
    if not ok:
        if output or not allow_copy:
            raise ValueError(
                "%s: shape %s with strides %s (elements): xent needs the last axis contiguous and the "
                "leading axes collapsible into one row stride >= %d" % (name, tuple(shape), tuple(v.strides), cols)
            )
        return matrix(_copy_contiguous(v, name), name)
    return Mat(v, tuple(shape), rows, cols, stride)


class Vec:
    """A flat run of items: pointer, element stride (0 = packed), dtype."""

    __slots__ = ("v", "ptr", "stride", "code", "n", "shape")

    def __init__(self, v, n, stride):
        self.v = v
        self.ptr = v.ptr or (EMPTY_PTR if n == 0 else 0)
        self.stride = stride
        self.code = v.code
        self.n = n
        self.shape = v.shape


def indices(x, name: str, shape) -> Vec:
    """Class indices with exactly `shape` (int32/int64 zero-copy; other
    integer dtypes are converted to int64)."""
    v = x if isinstance(x, View) else view(x, name)
    if tuple(v.shape) != tuple(shape):
        raise ValueError(
            "%s has shape %s; expected %s (one class index per row)" % (name, tuple(v.shape), tuple(shape))
        )
    if v.code not in INDEX_CODES:
        if v.kind == "torch":
            torch = _torch()
            if v.obj.is_floating_point() or v.obj.is_complex() or v.obj.dtype == torch.bool:
                raise TypeError("%s has dtype %s; class indices must be integers" % (name, v.dtype_name))
            return indices(v.obj.to(torch.int64), name, shape)
        a = v.obj if isinstance(v.obj, np.ndarray) else np.asarray(v.obj)
        if a.dtype.kind not in "iu":
            raise TypeError("%s has dtype %s; class indices must be integers" % (name, v.dtype_name))
        return indices(a.astype(np.int64), name, shape)
    n = 1
    for d in shape:
        n *= d
    r = _collapse(v.shape, v.strides) if v.shape else 0
    if r is None or (r <= 0 and n > 1):
        if v.kind == "torch":
            return indices(v.obj.contiguous(), name, shape)
        return indices(np.ascontiguousarray(v.obj), name, shape)
    return Vec(v, n, r if n > 1 else 1)


def f32_vector(x, name: str, n: int, like_kind: str = "numpy"):
    """A packed float32 vector of n values (converted/copied as needed; these
    are O(V) or O(B) and never the hot data). Returns (pointer, keep)."""
    if x is None:
        return None, None
    if is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            raise ValueError("%s is on device '%s'; xent runs on CPU tensors" % (name, t.device))
        t = t.to(_torch().float32).contiguous().reshape(-1)
        if t.numel() != n:
            raise ValueError("%s has %d values; expected %d" % (name, t.numel(), n))
        return t.data_ptr(), t
    a = np.asarray(x)
    if a.dtype.kind not in "fiub" or (a.dtype.kind == "f" and a.dtype.itemsize > 8):
        raise TypeError("%s has dtype %s; expected real numbers" % (name, a.dtype))
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    if a.size != n:
        raise ValueError("%s has %d values; expected %d" % (name, a.size, n))
    return a.__array_interface__["data"][0], a


# ---------------------------------------------------------------------------
# Result allocation in the caller's array library.
def np_dtype(code: int):
    if code == L.XENT_F32:
        return np.dtype(np.float32)
    if code == L.XENT_F16:
        return np.dtype(np.float16)
    if code == L.XENT_BF16:
        if NP_BF16 is None:
            raise TypeError(
                "a bfloat16 numpy result needs the ml_dtypes package (pip install ml_dtypes), "
                "or pass an output array / torch tensors"
            )
        return NP_BF16
    raise TypeError("no numpy dtype for xent dtype %d" % code)


_torch_dtypes = None


def torch_dtype(code: int):
    global _torch_dtypes
    if _torch_dtypes is None:
        torch = _torch()
        _torch_dtypes = {L.XENT_F32: torch.float32, L.XENT_F16: torch.float16, L.XENT_BF16: torch.bfloat16}
    return _torch_dtypes[code]


def torch_code(dtype) -> int:
    """The xent dtype code of a torch dtype (None when xent has none)."""
    return _torch_code_map(_torch()).get(dtype)


_ITEMSIZE = {L.XENT_F32: 4, L.XENT_BF16: 2, L.XENT_F16: 2}


def empty(kind: str, shape, code: int):
    """A new uninitialized array; returns (array, pointer). Arrays of at least
    _buffers.THRESHOLD bytes come from xent's huge-page advised, recycled
    buffers (see _buffers.py); smaller ones from numpy / torch."""
    n = 1
    for d in shape:
        n *= d
    nbytes = n * _ITEMSIZE.get(code, 4)
    if nbytes >= _buffers.THRESHOLD:
        buf = _buffers.buffer(nbytes)
        if kind == "torch":
            # frombuffer keeps `buf` (and so the block) alive as long as the storage
            t = _torch().frombuffer(buf, dtype=torch_dtype(code), count=n).view(shape)
            return t, ctypes.addressof(buf)
        a = np.frombuffer(buf, dtype=np_dtype(code), count=n).reshape(shape)
        return a, ctypes.addressof(buf)
    if kind == "torch":
        t = _torch().empty(shape, dtype=torch_dtype(code))
        return t, t.data_ptr()
    a = np.empty(shape, dtype=np_dtype(code))
    return a, a.__array_interface__["data"][0]


def fast_bind_args(empty_fn):
    """The arguments of _fast.bind: how the compiled path finds the library
    and allocates results (`empty_fn` for large ones; tests pass a recorder)."""
    return (
        L.lib._handle,
        np.ndarray,
        empty_fn,
        scalar,
        _buffers.THRESHOLD,
        np.empty,
        np.float32,
        (np.dtype(np.float32), NP_BF16, np.dtype(np.float16)),
    )


def scalar(kind: str, value: float, code: int = L.XENT_F32):
    """A reduced loss: numpy float32 scalar, or a 0-d torch tensor."""
    if kind == "torch":
        return _torch().tensor(value, dtype=torch_dtype(code))
    return np.float32(value)
