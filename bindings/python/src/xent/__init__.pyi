# Type stubs for the xent array API (numpy arrays, torch CPU tensors, DLPack /
# buffer-protocol arrays; classes on the last axis).
from typing import Any, Literal, NamedTuple, Optional, Tuple, Union, overload

__version__: str
library_path: str
library_origin: Literal["XENT_LIBRARY", "bundled", "system"]

ArrayLike = Any  # numpy.ndarray, torch.Tensor (CPU), DLPack producer, buffer
Reduction = Literal["mean", "sum", "none"]
GradSpec = Union[None, bool, Literal["inplace"], ArrayLike]
Kind = Literal["logits", "log_probs", "probs"]

class XentError(RuntimeError):
    status: int
    def __init__(self, message: str, status: int = ...) -> None: ...

class XentTypeError(XentError, TypeError): ...
class XentValueError(XentError, ValueError): ...
class XentMemoryError(XentError, MemoryError): ...
class XentUnsupportedError(XentError, NotImplementedError): ...

def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: Optional[ArrayLike] = ...,
    ignore_index: int = ...,
    reduction: Reduction = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    grad: GradSpec = ...,
    grad_scale: float = ...,
    row_scale: Optional[ArrayLike] = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Literal["mean", "batchmean", "sum", "none"] = ...,
    log_target: bool = ...,
    grad: GradSpec = ...,
    grad_target: GradSpec = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def kl_div_logits(
    student: ArrayLike,
    teacher: ArrayLike,
    *,
    temperature: float = ...,
    reduction: Literal["mean", "batchmean", "sum", "none"] = ...,
    t2_scaling: bool = ...,
    labels: Optional[ArrayLike] = ...,
    ignore_index: int = ...,
    grad: GradSpec = ...,
    grad_target: GradSpec = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def jsd(
    input: ArrayLike,
    target: ArrayLike,
    *,
    beta: float = ...,
    input_kind: Kind = ...,
    target_kind: Kind = ...,
    temperature: float = ...,
    reduction: Literal["mean", "batchmean", "sum", "none"] = ...,
    labels: Optional[ArrayLike] = ...,
    ignore_index: int = ...,
    grad: GradSpec = ...,
    grad_target: GradSpec = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: Optional[ArrayLike] = ...,
    reduction: Literal["mean", "batchmean", "sum", "none"] = ...,
    pos_weight: Optional[ArrayLike] = ...,
    grad: GradSpec = ...,
    grad_scale: float = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def softmax(
    input: ArrayLike,
    dim: int = ...,
    *,
    temperature: float = ...,
    out: Optional[ArrayLike] = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def log_softmax(
    input: ArrayLike,
    dim: int = ...,
    *,
    temperature: float = ...,
    out: Optional[ArrayLike] = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def logsumexp(
    input: ArrayLike, dim: int = ..., *, keepdim: bool = ..., temperature: float = ..., num_threads: Optional[int] = ...
) -> Any: ...
def entropy(
    input: ArrayLike, dim: int = ..., *, keepdim: bool = ..., temperature: float = ..., num_threads: Optional[int] = ...
) -> Any: ...
def softmax_backward(
    output: ArrayLike,
    grad_output: ArrayLike,
    *,
    temperature: float = ...,
    out: Optional[ArrayLike] = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def log_softmax_backward(
    output: ArrayLike,
    grad_output: ArrayLike,
    *,
    temperature: float = ...,
    out: Optional[ArrayLike] = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
@overload
def token_logprobs(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    entropy: Literal[False] = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
@overload
def token_logprobs(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    entropy: Literal[True],
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> Tuple[Any, Any]: ...
def library_version() -> str: ...
def abi_version() -> int: ...
def active_target() -> str: ...
def supported_targets() -> list[str]: ...
def force_target(name: Optional[str]) -> None: ...
def threading_backend() -> str: ...
def blas_backend() -> str: ...
def linear_cross_entropy(
    input: Any,
    linear_weight: Any,
    target: Any,
    *,
    linear_bias: Any = ...,
    weight: Any = ...,
    reduction: str = ...,
    ignore_index: Optional[int] = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    grad: Any = ...,
    grad_dtype: Optional[str] = ...,
    out: Optional[dict[str, Any]] = ...,
    accumulate: bool = ...,
    row_scale: Any = ...,
    grad_scale: float = ...,
    return_lse: bool = ...,
    scratch_bytes: int = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def max_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def info() -> dict[str, Any]: ...
def empty_cache() -> None: ...
def set_buffer_cache_limit(nbytes: int) -> None: ...
def buffer_cache_stats() -> dict[str, int]: ...

# Per-token statistics (xent/_token_stats.py).
class TokenStats(NamedTuple):
    logprob: Any
    entropy: Any
    lse: Any
    argmax: Any
    argmax_logprob: Any
    topk_logprobs: Any
    topk_indices: Any
    topk_mass: Any
    ref_logprob: Any
    ref_lse: Any
    kl: Any

def token_stats(
    logits: ArrayLike,
    target: Optional[ArrayLike] = ...,
    *,
    logprob: Optional[bool] = ...,
    entropy: bool = ...,
    lse: bool = ...,
    argmax: bool = ...,
    topk: int = ...,
    topk_mass: bool = ...,
    ref_logits: Optional[ArrayLike] = ...,
    ref_logprob: Optional[bool] = ...,
    ref_lse: bool = ...,
    kl: Optional[bool] = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> TokenStats: ...
def token_stats_backward(
    logits: ArrayLike,
    target: Optional[ArrayLike] = ...,
    *,
    grad_logprob: Optional[ArrayLike] = ...,
    grad_entropy: Optional[ArrayLike] = ...,
    lse: Optional[ArrayLike] = ...,
    entropy: Optional[ArrayLike] = ...,
    topk_indices: Optional[ArrayLike] = ...,
    grad_topk_logprobs: Optional[ArrayLike] = ...,
    ref_logits: Optional[ArrayLike] = ...,
    grad_kl: Optional[ArrayLike] = ...,
    ref_lse: Optional[ArrayLike] = ...,
    kl: Optional[ArrayLike] = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    grad: Any = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
@overload
def kl_penalty(
    logprob: ArrayLike,
    ref_logprob: ArrayLike,
    *,
    kind: str = ...,
    straight_through: bool = ...,
    log_ratio_clamp: Optional[float] = ...,
    value_clamp: Optional[float] = ...,
    grad: Literal[False] = ...,
    grad_output: Optional[ArrayLike] = ...,
) -> Any: ...
@overload
def kl_penalty(
    logprob: ArrayLike,
    ref_logprob: ArrayLike,
    *,
    kind: str = ...,
    straight_through: bool = ...,
    log_ratio_clamp: Optional[float] = ...,
    value_clamp: Optional[float] = ...,
    grad: Literal[True],
    grad_output: Optional[ArrayLike] = ...,
) -> Tuple[Any, Any]: ...

# Vocab-parallel cross-entropy (xent/_vocab_parallel.py).
def cross_entropy_shard_stats_doubles(rows: int, label_smoothing: float = ...) -> int: ...
def cross_entropy_shard_stats(
    logits: Any,
    target: Any,
    *,
    num_classes: int,
    class_offset: int,
    weight: Any = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    softcap: Optional[float] = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def cross_entropy_shard_finish(
    logits: Any,
    target: Any,
    stats: Any,
    *,
    num_classes: int,
    class_offset: int,
    weight: Any = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    grad: Any = ...,
    grad_scale: float = ...,
    row_scale: Any = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...

# Vocab-parallel token log-probs and entropy (xent/_vocab_parallel.py).
def token_logprobs_shard_stats_doubles(rows: int, entropy: bool = ...) -> int: ...
def token_logprobs_shard_stats(
    logits: Any,
    target: Any = ...,
    *,
    num_classes: int,
    class_offset: int,
    entropy: bool = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def token_logprobs_shard_finish(
    stats: Any,
    target: Any = ...,
    *,
    rows: int,
    num_classes: int,
    entropy: bool = ...,
    ignore_index: int = ...,
) -> Tuple[Any, Any, Any]: ...
def token_logprobs_shard_backward(
    logits: Any,
    target: Any,
    lse: Any,
    *,
    num_classes: int,
    class_offset: int,
    grad_logprob: Any = ...,
    grad_entropy: Any = ...,
    entropy: Any = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    grad: Any = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...

# Vocab-parallel distillation KL (xent/_vocab_parallel.py).
def kl_div_logits_shard_stats_doubles(rows: int) -> int: ...
def kl_div_logits_shard_stats(
    student: Any,
    teacher: Any,
    *,
    num_classes: int,
    class_offset: int,
    temperature: float = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
def kl_div_logits_shard_finish(
    student: Any,
    teacher: Any,
    stats: Any,
    *,
    num_classes: int,
    class_offset: int,
    temperature: float = ...,
    reduction: str = ...,
    t2_scaling: bool = ...,
    labels: Any = ...,
    ignore_index: int = ...,
    grad: Any = ...,
    grad_scale: float = ...,
    num_threads: Optional[int] = ...,
) -> Any: ...
