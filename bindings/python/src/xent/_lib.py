"""Loading libxent and the ctypes mirror of include/xent/xent.h.

Everything that touches the C ABI lives here: the argument structs (field for
field as the header declares them; tests/test_abi_layout.py compares every
offset and size with the C compiler's), the status codes and the exceptions
they map to, and the search for the shared library:

1. ``XENT_LIBRARY`` (environment): a path to libxent.so.1 (or a directory
   holding it). Nothing else is tried when it is set.
2. The copy bundled in this package (``xent/libxent.so.1``), present when the
   package was built with the default ``-Dbundle_libxent=true``.
3. The dynamic loader's search path (``libxent.so.1``: LD_LIBRARY_PATH,
   ld.so.cache, ...), i.e. a system-installed libxent.

ctypes releases the GIL around every foreign call, so kernels run while other
Python threads proceed.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import POINTER, Structure, byref, c_char_p, c_float, c_int32, c_int64, c_size_t, c_uint32, c_void_p, sizeof

# The C ABI this package was written for (include/xent/version.h).
ABI_VERSION = 1
# Release of the C header mirrored here; the library may be newer.
HEADER_VERSION = "0.1.0"

# ---------------------------------------------------------------------------
# Enumerations (xent.h)
XENT_OK = 0
XENT_ERROR_NULL_POINTER = 1
XENT_ERROR_INVALID_SHAPE = 2
XENT_ERROR_INVALID_VALUE = 3
XENT_ERROR_TARGET_OUT_OF_RANGE = 4
XENT_ERROR_INVALID_DTYPE = 5
XENT_ERROR_INVALID_ENUM = 6
XENT_ERROR_INVALID_STRUCT = 7
XENT_ERROR_ALIASING = 8
XENT_ERROR_UNSUPPORTED_TARGET = 9
XENT_ERROR_OUT_OF_MEMORY = 10
XENT_ERROR_CALLBACK = 11
XENT_ERROR_INTERNAL = 12
XENT_ERROR_UNSUPPORTED = 13

XENT_DTYPE_AUTO = 0
XENT_F32 = 1
XENT_BF16 = 2
XENT_F16 = 3
XENT_I32 = 4
XENT_I64 = 5

REDUCTION_NONE = 0
REDUCTION_MEAN = 1
REDUCTION_SUM = 2
REDUCTION_BATCHMEAN = 3
REDUCTIONS = {"none": REDUCTION_NONE, "mean": REDUCTION_MEAN, "sum": REDUCTION_SUM, "batchmean": REDUCTION_BATCHMEAN}

DIST_LOGITS = 0
DIST_LOG_PROBS = 1
DIST_PROBS = 2
DIST_KINDS = {"logits": DIST_LOGITS, "log_probs": DIST_LOG_PROBS, "probs": DIST_PROBS}

DIVERGENCE_KL = 0
DIVERGENCE_JSD = 1

XENT_ACCUMULATE_GRAD_HIDDEN = 1
XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT = 2
XENT_ACCUMULATE_GRAD_LINEAR_BIAS = 4
XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES = 128 << 20
XENT_KL_K1 = 0
XENT_KL_K2 = 1
XENT_KL_K3 = 2
XENT_KL_ABS = 3
XENT_TOPK_MAX = 64


# ---------------------------------------------------------------------------
# Exceptions: every failed C call raises a subclass of XentError that is also
# the matching builtin (TypeError for dtypes, ValueError for shapes/values).
class XentError(RuntimeError):
    """A libxent call failed. ``status`` is the xent_status code; the message
    is the library's xent_last_error() detail."""

    def __init__(self, message: str, status: int = XENT_ERROR_INTERNAL):
        super().__init__(message)
        self.status = status


class XentTypeError(XentError, TypeError):
    pass


class XentValueError(XentError, ValueError):
    pass


class XentMemoryError(XentError, MemoryError):
    pass


class XentUnsupportedError(XentError, NotImplementedError):
    pass


_STATUS_EXC = {
    XENT_ERROR_NULL_POINTER: XentValueError,
    XENT_ERROR_INVALID_SHAPE: XentValueError,
    XENT_ERROR_INVALID_VALUE: XentValueError,
    XENT_ERROR_TARGET_OUT_OF_RANGE: XentValueError,
    XENT_ERROR_INVALID_DTYPE: XentTypeError,
    XENT_ERROR_INVALID_ENUM: XentValueError,
    XENT_ERROR_INVALID_STRUCT: XentError,
    XENT_ERROR_ALIASING: XentValueError,
    XENT_ERROR_UNSUPPORTED_TARGET: XentValueError,
    XENT_ERROR_OUT_OF_MEMORY: XentMemoryError,
    XENT_ERROR_CALLBACK: XentError,
    XENT_ERROR_INTERNAL: XentError,
    XENT_ERROR_UNSUPPORTED: XentUnsupportedError,
}


# ---------------------------------------------------------------------------
# Argument structs. Field order, types and names exactly as in xent.h.
_parallel_for_fn = c_void_p  # xent_parallel_for_fn (never set from Python)


class CrossEntropyArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("weight", c_void_p),
        ("row_scale", c_void_p),
        ("ignore_index", c_int64),
        ("reduction", c_int32),
        ("label_smoothing", c_float),
        ("z_loss", c_float),
        ("softcap", c_float),
        ("grad_scale", c_float),
        ("reserved0", c_int32),
        ("loss", c_void_p),
        ("row_loss", c_void_p),
        ("lse", c_void_p),
        ("grad", c_void_p),
        ("grad_stride", c_size_t),
        ("grad_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class BceArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("weight", c_void_p),
        ("weight_stride", c_size_t),
        ("pos_weight", c_void_p),
        ("reduction", c_int32),
        ("grad_scale", c_float),
        ("loss", c_void_p),
        ("row_loss", c_void_p),
        ("elem_loss", c_void_p),
        ("elem_loss_stride", c_size_t),
        ("grad", c_void_p),
        ("grad_stride", c_size_t),
        ("grad_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class DivergenceArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("input", c_void_p),
        ("input_stride", c_size_t),
        ("input_dtype", c_int32),
        ("input_kind", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("target_dtype", c_int32),
        ("target_kind", c_int32),
        ("divergence", c_int32),
        ("beta", c_float),
        ("temperature", c_float),
        ("t2_scaling", c_int32),
        ("reduction", c_int32),
        ("grad_scale", c_float),
        ("labels", c_void_p),
        ("labels_stride", c_size_t),
        ("ignore_index", c_int64),
        ("labels_dtype", c_int32),
        ("reserved0", c_int32),
        ("loss", c_void_p),
        ("row_loss", c_void_p),
        ("elem_loss", c_void_p),
        ("elem_loss_stride", c_size_t),
        ("grad_input", c_void_p),
        ("grad_input_stride", c_size_t),
        ("grad_target", c_void_p),
        ("grad_target_stride", c_size_t),
        ("grad_input_dtype", c_int32),
        ("grad_target_dtype", c_int32),
        ("num_threads", c_int32),
        ("reserved1", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class SoftmaxArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("temperature", c_float),
        ("probs", c_void_p),
        ("probs_stride", c_size_t),
        ("log_probs", c_void_p),
        ("log_probs_stride", c_size_t),
        ("probs_dtype", c_int32),
        ("log_probs_dtype", c_int32),
        ("lse", c_void_p),
        ("entropy", c_void_p),
        ("num_threads", c_int32),
        ("reserved0", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class SoftmaxBackwardArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("output", c_void_p),
        ("output_stride", c_size_t),
        ("output_dtype", c_int32),
        ("output_kind", c_int32),
        ("grad_output", c_void_p),
        ("grad_output_stride", c_size_t),
        ("grad_output_dtype", c_int32),
        ("temperature", c_float),
        ("grad_input", c_void_p),
        ("grad_input_stride", c_size_t),
        ("grad_input_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class TokenLogprobsArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("ignore_index", c_int64),
        ("temperature", c_float),
        ("softcap", c_float),
        ("logprob", c_void_p),
        ("entropy", c_void_p),
        ("lse", c_void_p),
        ("num_threads", c_int32),
        ("reserved0", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
        # Appended after 0.1.0 (src/xent/_token_stats.py).
        ("argmax", c_void_p),
        ("argmax_logprob", c_void_p),
        ("topk", c_int32),
        ("reserved1", c_int32),
        ("topk_logprobs", c_void_p),
        ("topk_indices", c_void_p),
        ("topk_mass", c_void_p),
        ("ref_logits", c_void_p),
        ("ref_logits_stride", c_size_t),
        ("ref_logits_dtype", c_int32),
        ("reserved2", c_int32),
        ("ref_logprob", c_void_p),
        ("ref_lse", c_void_p),
        ("kl", c_void_p),
    ]


class TokenLogprobsBackwardArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("ignore_index", c_int64),
        ("temperature", c_float),
        ("softcap", c_float),
        ("grad_logprob", c_void_p),
        ("grad_entropy", c_void_p),
        ("lse", c_void_p),
        ("entropy", c_void_p),
        ("topk", c_int32),
        ("reserved0", c_int32),
        ("topk_indices", c_void_p),
        ("grad_topk_logprobs", c_void_p),
        ("ref_logits", c_void_p),
        ("ref_logits_stride", c_size_t),
        ("ref_logits_dtype", c_int32),
        ("reserved1", c_int32),
        ("grad_kl", c_void_p),
        ("ref_lse", c_void_p),
        ("kl", c_void_p),
        ("grad", c_void_p),
        ("grad_stride", c_size_t),
        ("grad_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class KlPenaltyArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("logprob", c_void_p),
        ("ref_logprob", c_void_p),
        ("estimator", c_int32),
        ("straight_through", c_int32),
        ("log_ratio_clamp", c_float),
        ("value_clamp", c_float),
        ("grad_output", c_void_p),
        ("penalty", c_void_p),
        ("grad_logprob", c_void_p),
        ("num_threads", c_int32),
        ("reserved0", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class LinearCrossEntropyArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("hidden_size", c_size_t),
        ("hidden", c_void_p),
        ("hidden_stride", c_size_t),
        ("hidden_dtype", c_int32),
        ("linear_weight_dtype", c_int32),
        ("linear_weight", c_void_p),
        ("linear_weight_stride", c_size_t),
        ("linear_bias", c_void_p),
        ("linear_bias_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("weight", c_void_p),
        ("row_scale", c_void_p),
        ("ignore_index", c_int64),
        ("reduction", c_int32),
        ("label_smoothing", c_float),
        ("z_loss", c_float),
        ("softcap", c_float),
        ("grad_scale", c_float),
        ("accumulate", c_int32),
        ("scratch_bytes", c_size_t),
        ("loss", c_void_p),
        ("row_loss", c_void_p),
        ("lse", c_void_p),
        ("grad_hidden", c_void_p),
        ("grad_hidden_stride", c_size_t),
        ("grad_linear_weight", c_void_p),
        ("grad_linear_weight_stride", c_size_t),
        ("grad_linear_bias", c_void_p),
        ("grad_hidden_dtype", c_int32),
        ("grad_linear_weight_dtype", c_int32),
        ("grad_linear_bias_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class CrossEntropyShardStatsArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("shard_classes", c_size_t),
        ("class_offset", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("weight", c_void_p),
        ("ignore_index", c_int64),
        ("label_smoothing", c_float),
        ("softcap", c_float),
        ("stats", c_void_p),
        ("num_threads", c_int32),
        ("reserved0", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class CrossEntropyShardFinishArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("shard_classes", c_size_t),
        ("class_offset", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("weight", c_void_p),
        ("row_scale", c_void_p),
        ("ignore_index", c_int64),
        ("reduction", c_int32),
        ("label_smoothing", c_float),
        ("z_loss", c_float),
        ("softcap", c_float),
        ("grad_scale", c_float),
        ("reserved0", c_int32),
        ("stats", c_void_p),
        ("num_shards", c_size_t),
        ("loss", c_void_p),
        ("row_loss", c_void_p),
        ("lse", c_void_p),
        ("grad", c_void_p),
        ("grad_stride", c_size_t),
        ("grad_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class TokenLogprobsShardStatsArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("shard_classes", c_size_t),
        ("class_offset", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("ignore_index", c_int64),
        ("temperature", c_float),
        ("softcap", c_float),
        ("with_entropy", c_int32),
        ("reserved0", c_int32),
        ("stats", c_void_p),
        ("num_threads", c_int32),
        ("reserved1", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class TokenLogprobsShardFinishArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("target_dtype", c_int32),
        ("with_entropy", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("ignore_index", c_int64),
        ("stats", c_void_p),
        ("num_shards", c_size_t),
        ("logprob", c_void_p),
        ("entropy", c_void_p),
        ("lse", c_void_p),
    ]


class TokenLogprobsShardBackwardArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("shard_classes", c_size_t),
        ("class_offset", c_size_t),
        ("logits", c_void_p),
        ("logits_stride", c_size_t),
        ("logits_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("ignore_index", c_int64),
        ("temperature", c_float),
        ("softcap", c_float),
        ("grad_logprob", c_void_p),
        ("grad_entropy", c_void_p),
        ("lse", c_void_p),
        ("entropy", c_void_p),
        ("grad", c_void_p),
        ("grad_stride", c_size_t),
        ("grad_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class KlShardStatsArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("shard_classes", c_size_t),
        ("class_offset", c_size_t),
        ("input", c_void_p),
        ("input_stride", c_size_t),
        ("input_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("temperature", c_float),
        ("reserved0", c_int32),
        ("stats", c_void_p),
        ("num_threads", c_int32),
        ("reserved1", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


class KlShardFinishArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("batch", c_size_t),
        ("num_classes", c_size_t),
        ("shard_classes", c_size_t),
        ("class_offset", c_size_t),
        ("input", c_void_p),
        ("input_stride", c_size_t),
        ("input_dtype", c_int32),
        ("target_dtype", c_int32),
        ("target", c_void_p),
        ("target_stride", c_size_t),
        ("temperature", c_float),
        ("t2_scaling", c_int32),
        ("reduction", c_int32),
        ("grad_scale", c_float),
        ("labels", c_void_p),
        ("labels_stride", c_size_t),
        ("ignore_index", c_int64),
        ("labels_dtype", c_int32),
        ("reserved0", c_int32),
        ("stats", c_void_p),
        ("num_shards", c_size_t),
        ("loss", c_void_p),
        ("row_loss", c_void_p),
        ("grad_input", c_void_p),
        ("grad_input_stride", c_size_t),
        ("grad_input_dtype", c_int32),
        ("num_threads", c_int32),
        ("parallel_for", _parallel_for_fn),
        ("parallel_user", c_void_p),
    ]


# C struct name -> (ctypes struct, init function, operation function).
STRUCTS = {
    "xent_cross_entropy_args": (CrossEntropyArgs, "xent_cross_entropy_args_init", "xent_cross_entropy"),
    "xent_bce_args": (BceArgs, "xent_bce_args_init", "xent_bce_with_logits"),
    "xent_divergence_args": (DivergenceArgs, "xent_divergence_args_init", "xent_divergence"),
    "xent_softmax_args": (SoftmaxArgs, "xent_softmax_args_init", "xent_softmax"),
    "xent_softmax_backward_args": (SoftmaxBackwardArgs, "xent_softmax_backward_args_init", "xent_softmax_backward"),
    "xent_token_logprobs_args": (TokenLogprobsArgs, "xent_token_logprobs_args_init", "xent_token_logprobs"),
    "xent_linear_cross_entropy_args": (
        LinearCrossEntropyArgs,
        "xent_linear_cross_entropy_args_init",
        "xent_linear_cross_entropy",
    ),
    "xent_token_logprobs_backward_args": (
        TokenLogprobsBackwardArgs,
        "xent_token_logprobs_backward_args_init",
        "xent_token_logprobs_backward",
    ),
    "xent_kl_penalty_args": (KlPenaltyArgs, "xent_kl_penalty_args_init", "xent_kl_penalty"),
    "xent_cross_entropy_shard_stats_args": (
        CrossEntropyShardStatsArgs,
        "xent_cross_entropy_shard_stats_args_init",
        "xent_cross_entropy_shard_stats",
    ),
    "xent_cross_entropy_shard_finish_args": (
        CrossEntropyShardFinishArgs,
        "xent_cross_entropy_shard_finish_args_init",
        "xent_cross_entropy_shard_finish",
    ),
    "xent_token_logprobs_shard_stats_args": (
        TokenLogprobsShardStatsArgs,
        "xent_token_logprobs_shard_stats_args_init",
        "xent_token_logprobs_shard_stats",
    ),
    "xent_token_logprobs_shard_finish_args": (
        TokenLogprobsShardFinishArgs,
        "xent_token_logprobs_shard_finish_args_init",
        "xent_token_logprobs_shard_finish",
    ),
    "xent_token_logprobs_shard_backward_args": (
        TokenLogprobsShardBackwardArgs,
        "xent_token_logprobs_shard_backward_args_init",
        "xent_token_logprobs_shard_backward",
    ),
    "xent_kl_div_logits_shard_stats_args": (
        KlShardStatsArgs,
        "xent_kl_div_logits_shard_stats_args_init",
        "xent_kl_div_logits_shard_stats",
    ),
    "xent_kl_div_logits_shard_finish_args": (
        KlShardFinishArgs,
        "xent_kl_div_logits_shard_finish_args_init",
        "xent_kl_div_logits_shard_finish",
    ),
}


# ---------------------------------------------------------------------------
# Finding and loading the library.
_SONAME = "libxent.so.%d" % ABI_VERSION
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    env = os.environ.get("XENT_LIBRARY")
    if env:
        if os.path.isdir(env):
            return [("XENT_LIBRARY", os.path.join(env, _SONAME))]
        return [("XENT_LIBRARY", env)]
    out = []
    bundled = os.path.join(_PKG_DIR, _SONAME)
    if os.path.exists(bundled):
        out.append(("bundled", bundled))
    out.append(("system", _SONAME))
    return out


def _load():
    errors = []
    for origin, path in _candidates():
        try:
            return ctypes.CDLL(path), origin, path
        except OSError as e:
            errors.append("%s (%s): %s" % (path, origin, e))
    raise ImportError(
        "xent: cannot load the libxent shared library (%s). Tried:\n  %s\n"
        "Install xent with its bundled library (pip install ./bindings/python), install libxent "
        "system-wide, or set XENT_LIBRARY to the path of libxent.so.%d." % (_SONAME, "\n  ".join(errors), ABI_VERSION)
    )


lib, LIBRARY_ORIGIN, _loaded_as = _load()


def _resolved_path():
    """The file actually loaded (resolves loader-found names via /proc/self/maps)."""
    if os.path.isabs(_loaded_as):
        return os.path.realpath(_loaded_as)
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and os.path.basename(parts[5]).startswith("libxent.so"):
                    return parts[5]
    except OSError:
        pass
    return _loaded_as


LIBRARY_PATH = _resolved_path()

lib.xent_status_string.restype = c_char_p
lib.xent_status_string.argtypes = [c_int32]
lib.xent_last_error.restype = c_char_p
lib.xent_last_error.argtypes = []
lib.xent_version_string.restype = c_char_p
lib.xent_version_string.argtypes = []
lib.xent_version_number.restype = c_uint32
lib.xent_version_number.argtypes = []
lib.xent_abi_version.restype = c_uint32
lib.xent_abi_version.argtypes = []
lib.xent_threading_backend.restype = c_char_p
lib.xent_threading_backend.argtypes = []
lib.xent_max_threads.restype = c_int32
lib.xent_max_threads.argtypes = []
lib.xent_active_target.restype = c_char_p
lib.xent_active_target.argtypes = []
lib.xent_supported_targets.restype = c_size_t
lib.xent_supported_targets.argtypes = [POINTER(c_char_p), c_size_t]
lib.xent_force_target.restype = c_int32
lib.xent_force_target.argtypes = [c_char_p]
lib.xent_cross_entropy_shard_stats_doubles.restype = c_size_t
lib.xent_cross_entropy_shard_stats_doubles.argtypes = [c_size_t, c_float]
lib.xent_token_logprobs_shard_stats_doubles.restype = c_size_t
lib.xent_token_logprobs_shard_stats_doubles.argtypes = [c_size_t, c_int32]
lib.xent_kl_div_logits_shard_stats_doubles.restype = c_size_t
lib.xent_kl_div_logits_shard_stats_doubles.argtypes = [c_size_t]

if lib.xent_abi_version() != ABI_VERSION:
    raise ImportError(
        "xent: %s has ABI version %d, this package needs %d" % (LIBRARY_PATH, lib.xent_abi_version(), ABI_VERSION)
    )


def status_string(status: int) -> str:
    return lib.xent_status_string(status).decode()


def last_error() -> str:
    return lib.xent_last_error().decode()


def raise_for_status(status: int, where: str) -> None:
    """Raises the exception for a non-OK status, with xent_last_error()'s
    detail (which belongs to this OS thread's last call)."""
    if status == XENT_OK:
        return
    detail = last_error()
    msg = "%s: %s" % (where, detail or status_string(status))
    if detail:
        msg += " [%s]" % status_string(status)
    raise _STATUS_EXC.get(status, XentError)(msg, status)


# Per-operation bindings, resolved on first use so that a library lacking an
# operation still serves the others (the error names the missing symbol).
class _Op:
    __slots__ = ("struct", "init_name", "fn_name", "fn", "template", "lock")

    def __init__(self, struct, init_name, fn_name):
        self.struct = struct
        self.init_name = init_name
        self.fn_name = fn_name
        self.fn = None
        self.template = None
        self.lock = threading.Lock()

    def _resolve(self):
        with self.lock:
            if self.fn is not None:
                return
            try:
                init = getattr(lib, self.init_name)
                fn = getattr(lib, self.fn_name)
            except AttributeError:
                raise XentUnsupportedError(
                    "%s is not in the loaded libxent (%s, version %s): the library predates this operation"
                    % (self.fn_name, LIBRARY_PATH, lib.xent_version_string().decode()),
                    XENT_ERROR_UNSUPPORTED,
                ) from None
            init.restype = c_int32
            init.argtypes = [c_void_p, c_size_t]
            fn.restype = c_int32
            fn.argtypes = [c_void_p]
            t = self.struct()
            raise_for_status(init(byref(t), sizeof(t)), self.init_name)
            self.template = bytes(t)
            self.fn = fn

    def args(self):
        """A fresh struct filled by the library's *_args_init (copied from a
        template made once)."""
        if self.fn is None:
            self._resolve()
        return self.struct.from_buffer_copy(self.template)

    def __call__(self, args):
        raise_for_status(self.fn(byref(args)), self.fn_name)


OPS = {name: _Op(*spec) for name, spec in STRUCTS.items()}
cross_entropy_op = OPS["xent_cross_entropy_args"]
bce_op = OPS["xent_bce_args"]
divergence_op = OPS["xent_divergence_args"]
softmax_op = OPS["xent_softmax_args"]
softmax_backward_op = OPS["xent_softmax_backward_args"]
token_logprobs_op = OPS["xent_token_logprobs_args"]
linear_cross_entropy_op = OPS["xent_linear_cross_entropy_args"]
token_logprobs_backward_op = OPS["xent_token_logprobs_backward_args"]
kl_penalty_op = OPS["xent_kl_penalty_args"]
cross_entropy_shard_stats_op = OPS["xent_cross_entropy_shard_stats_args"]
cross_entropy_shard_finish_op = OPS["xent_cross_entropy_shard_finish_args"]
token_logprobs_shard_stats_op = OPS["xent_token_logprobs_shard_stats_args"]
token_logprobs_shard_finish_op = OPS["xent_token_logprobs_shard_finish_args"]
token_logprobs_shard_backward_op = OPS["xent_token_logprobs_shard_backward_args"]
kl_div_logits_shard_stats_op = OPS["xent_kl_div_logits_shard_stats_args"]
kl_div_logits_shard_finish_op = OPS["xent_kl_div_logits_shard_finish_args"]


def has_op(fn_name: str) -> bool:
    return hasattr(lib, fn_name)


# ---------------------------------------------------------------------------
# Targets and threads.
def active_target() -> str:
    return lib.xent_active_target().decode()


def supported_targets():
    n = lib.xent_supported_targets(None, 0)
    names = (c_char_p * max(n, 1))()
    n = min(n, lib.xent_supported_targets(names, n))
    return [names[i].decode() for i in range(n)]


def force_target(name) -> None:
    raw = None if name is None else name.encode()
    raise_for_status(lib.xent_force_target(raw), "xent_force_target")


_default_threads = 0


def set_num_threads(n: int) -> None:
    global _default_threads
    n = int(n)
    if n < 0:
        raise ValueError("num_threads = %d must be >= 0 (0 = all cores)" % n)
    _default_threads = n


def get_num_threads() -> int:
    return _default_threads


def threads(n) -> int:
    if n is None:
        return _default_threads
    n = int(n)
    if n < 0:
        raise ValueError("num_threads = %d must be >= 0 (0 = all cores)" % n)
    return n
