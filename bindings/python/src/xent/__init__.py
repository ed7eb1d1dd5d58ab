"""xent: fused softmax cross-entropy, KL/JSD, BCE-with-logits and softmax
kernels for CPU (Google Highway SIMD, runtime dispatch), over libxent's C ABI.

Array API (numpy arrays, torch CPU tensors, DLPack / buffer-protocol arrays;
classes on the last axis)::

    import numpy as np, xent
    logits = np.random.randn(8, 32000).astype(np.float32)
    target = np.random.randint(0, 32000, size=8)
    loss = xent.cross_entropy(logits, target)                 # mean over rows
    loss, grad = xent.cross_entropy(logits, target, grad=True)

torch autograd drop-ins live in :mod:`xent.torch` (imported on demand; importing
``xent`` never imports torch)::

    import xent.torch as xF
    loss = xF.cross_entropy(logits, target)   # instead of F.cross_entropy
"""

from __future__ import annotations

from . import _api, _buffers, _lib
from ._api import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    entropy,
    jsd,
    kl_div,
    kl_div_logits,
    log_softmax,
    log_softmax_backward,
    logsumexp,
    softmax,
    softmax_backward,
    token_logprobs,
)
from ._lib import XentError, XentMemoryError, XentTypeError, XentUnsupportedError, XentValueError
from ._linear import blas_backend, linear_cross_entropy
from ._token_stats import TokenStats, kl_penalty, token_stats, token_stats_backward
from ._vocab_parallel import (
    cross_entropy_shard_finish,
    cross_entropy_shard_stats,
    cross_entropy_shard_stats_doubles,
    kl_div_logits_shard_finish,
    kl_div_logits_shard_stats,
    kl_div_logits_shard_stats_doubles,
    token_logprobs_shard_backward,
    token_logprobs_shard_finish,
    token_logprobs_shard_stats,
    token_logprobs_shard_stats_doubles,
)

__version__ = "0.1.0"

#: Path of the libxent shared library in use, and where it was found:
#: "XENT_LIBRARY", "bundled" (inside this package) or "system" (dynamic loader).
library_path: str = _lib.LIBRARY_PATH
library_origin: str = _lib.LIBRARY_ORIGIN


def library_version() -> str:
    """Version of the loaded libxent ("MAJOR.MINOR.PATCH")."""
    return _lib.lib.xent_version_string().decode()


def abi_version() -> int:
    """ABI (soname) major of the loaded libxent."""
    return int(_lib.lib.xent_abi_version())


def active_target() -> str:
    """SIMD target the next call will use, e.g. 'avx3' (AVX-512), 'avx2', 'neon'."""
    return _lib.active_target()


def supported_targets() -> list:
    """SIMD targets compiled into libxent and supported by this CPU, best first."""
    return _lib.supported_targets()


def force_target(name) -> None:
    """Forces a SIMD target process-wide (None or 'auto' restores automatic
    choice). Raises ValueError for a target this CPU or build lacks. Not to be
    called while other threads are inside xent calls."""
    _lib.force_target(name)


def threading_backend() -> str:
    """libxent's built-in threading backend: 'openmp', 'tbb' or 'none'."""
    return _lib.lib.xent_threading_backend().decode()


def max_threads() -> int:
    """Threads libxent uses for num_threads = 0 on this machine."""
    return int(_lib.lib.xent_max_threads())


def set_num_threads(n: int) -> None:
    """Default thread count of every later call that does not pass num_threads
    (process-wide; 0 = all cores, the default; 1 = the calling thread only).
    Results are bit-identical for every thread count."""
    _lib.set_num_threads(n)


def get_num_threads() -> int:
    """The default set by set_num_threads() (0 = all cores)."""
    return _lib.get_num_threads()


def empty_cache() -> None:
    """Returns the idle cached result buffers to the system. Large results
    (B x V gradients, probabilities; >= 4 MiB) come from huge-page advised
    mappings that are recycled for the next result of the same size once the
    arrays holding them are gone (see buffer_cache_stats())."""
    _buffers.empty_cache()


def set_buffer_cache_limit(nbytes: int) -> None:
    """Most idle bytes the result-buffer cache keeps (default: 1/8 of the
    physical memory, or XENT_BUFFER_CACHE); 0 turns the cache off (every
    large result then maps fresh, huge-page advised memory)."""
    _buffers.set_limit(nbytes)


def buffer_cache_stats() -> dict:
    """The result-buffer cache: blocks allocated, reused, released, unmapped;
    idle bytes and blocks; the limit."""
    return _buffers.stats()


def info() -> dict:
    """Everything about the loaded library, for bug reports."""
    return {
        "version": __version__,
        "library_version": library_version(),
        "abi_version": abi_version(),
        "library_path": library_path,
        "library_origin": library_origin,
        "threading_backend": threading_backend(),
        "blas_backend": blas_backend(),
        "max_threads": max_threads(),
        "num_threads": get_num_threads(),
        "active_target": active_target(),
        "supported_targets": supported_targets(),
        "compiled_path": _api._fast is not None,
        "buffer_cache": buffer_cache_stats(),
    }


__all__ = [
    "__version__",
    "cross_entropy",
    "kl_div",
    "kl_div_logits",
    "jsd",
    "binary_cross_entropy_with_logits",
    "softmax",
    "log_softmax",
    "logsumexp",
    "entropy",
    "token_logprobs",
    "softmax_backward",
    "log_softmax_backward",
    "XentError",
    "XentTypeError",
    "XentValueError",
    "XentMemoryError",
    "XentUnsupportedError",
    "linear_cross_entropy",
    "blas_backend",
    "library_path",
    "library_origin",
    "library_version",
    "abi_version",
    "active_target",
    "supported_targets",
    "force_target",
    "threading_backend",
    "max_threads",
    "set_num_threads",
    "get_num_threads",
    "info",
    "empty_cache",
    "set_buffer_cache_limit",
    "buffer_cache_stats",
    "token_stats",
    "token_stats_backward",
    "kl_penalty",
    "TokenStats",
    "cross_entropy_shard_stats",
    "cross_entropy_shard_finish",
    "cross_entropy_shard_stats_doubles",
    "token_logprobs_shard_stats",
    "token_logprobs_shard_finish",
    "token_logprobs_shard_backward",
    "token_logprobs_shard_stats_doubles",
    "kl_div_logits_shard_stats",
    "kl_div_logits_shard_finish",
    "kl_div_logits_shard_stats_doubles",
]
