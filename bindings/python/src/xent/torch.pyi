# Type stubs for xent.torch: autograd drop-ins for torch.nn.functional.
from typing import Any, Literal, Optional, Tuple, overload

import torch
from torch import Tensor

from xent import TokenStats
from xent import torch_distributed as distributed  # noqa: F401  (xent.torch.distributed)

def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = ...,
    size_average: Optional[bool] = ...,
    ignore_index: int = ...,
    reduce: Optional[bool] = ...,
    reduction: str = ...,
    label_smoothing: float = ...,
    *,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    inplace_backward: bool = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: str = ...,
    log_target: bool = ...,
    *,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
def kl_div_logits(
    student: Tensor,
    teacher: Tensor,
    *,
    temperature: float = ...,
    reduction: str = ...,
    t2_scaling: bool = ...,
    labels: Optional[Tensor] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
def jsd(
    input: Tensor,
    target: Tensor,
    *,
    beta: float = ...,
    labels: Optional[Tensor] = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    input_kind: Literal["logits", "log_probs", "probs"] = ...,
    target_kind: Literal["logits", "log_probs", "probs"] = ...,
    temperature: float = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = ...,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: str = ...,
    pos_weight: Optional[Tensor] = ...,
    *,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
def softmax(
    input: Tensor,
    dim: Optional[int] = ...,
    _stacklevel: int = ...,
    dtype: Optional[torch.dtype] = ...,
    *,
    temperature: float = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
def log_softmax(
    input: Tensor,
    dim: Optional[int] = ...,
    _stacklevel: int = ...,
    dtype: Optional[torch.dtype] = ...,
    *,
    temperature: float = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
@overload
def token_logprobs(
    logits: Tensor,
    target: Tensor,
    *,
    entropy: Literal[False] = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
@overload
def token_logprobs(
    logits: Tensor,
    target: Tensor,
    *,
    entropy: Literal[True],
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> Tuple[Tensor, Tensor]: ...

class CrossEntropyLoss(torch.nn.Module):
    def __init__(
        self,
        weight: Optional[Tensor] = ...,
        size_average: Optional[bool] = ...,
        ignore_index: int = ...,
        reduce: Optional[bool] = ...,
        reduction: str = ...,
        label_smoothing: float = ...,
        *,
        z_loss: float = ...,
        softcap: Optional[float] = ...,
        inplace_backward: bool = ...,
        num_threads: Optional[int] = ...,
    ) -> None: ...
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...

class KLDivLoss(torch.nn.Module):
    def __init__(
        self,
        size_average: Optional[bool] = ...,
        reduce: Optional[bool] = ...,
        reduction: str = ...,
        log_target: bool = ...,
    ) -> None: ...
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...

class BCEWithLogitsLoss(torch.nn.Module):
    def __init__(
        self,
        weight: Optional[Tensor] = ...,
        size_average: Optional[bool] = ...,
        reduce: Optional[bool] = ...,
        reduction: str = ...,
        pos_weight: Optional[Tensor] = ...,
    ) -> None: ...
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...

class JSDLoss(torch.nn.Module):
    def __init__(self, beta: float = ..., ignore_index: int = ...) -> None: ...
    def forward(self, log_q: Tensor, log_p: Tensor, shift_labels: Optional[Tensor] = ...) -> Tensor: ...

def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Optional[Tensor] = ...,
    weight: Optional[Tensor] = ...,
    reduction: str = ...,
    ignore_index: Optional[int] = ...,
    label_smoothing: float = ...,
    options: Any = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    scratch_bytes: int = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...

class LinearCrossEntropyLoss(torch.nn.Module):
    linear: torch.nn.Linear
    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: Tuple[int, ...] = ...,
        bias: bool = ...,
        device: Any = ...,
        dtype: Any = ...,
        reduction: str = ...,
        weight: Optional[Tensor] = ...,
        ignore_index: Optional[int] = ...,
        label_smoothing: float = ...,
        options: Any = ...,
        z_loss: float = ...,
        softcap: Optional[float] = ...,
        scratch_bytes: int = ...,
        num_threads: Optional[int] = ...,
    ) -> None: ...
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...

# Per-token statistics (xent/_token_stats_torch.py).

def token_stats(
    logits: Tensor,
    target: Optional[Tensor] = ...,
    *,
    logprob: Optional[bool] = ...,
    entropy: bool = ...,
    lse: bool = ...,
    argmax: bool = ...,
    topk: int = ...,
    topk_mass: bool = ...,
    ref_logits: Optional[Tensor] = ...,
    ref_logprob: Optional[bool] = ...,
    ref_lse: bool = ...,
    kl: Optional[bool] = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    num_threads: Optional[int] = ...,
) -> TokenStats: ...
def topk_logprobs(
    logits: Tensor,
    k: int,
    *,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    num_threads: Optional[int] = ...,
) -> Tuple[Tensor, Tensor]: ...
def kl_penalty(
    logprob: Tensor,
    ref_logprob: Tensor,
    kind: str = ...,
    *,
    log_ratio_clamp: Optional[float] = ...,
    value_clamp: Optional[float] = ...,
    straight_through: bool = ...,
) -> Tensor: ...
