# Type stubs for xent.torch.distributed: vocab-parallel cross-entropy, token
# log-probs and distillation KL over a torch.distributed process group.
from typing import Any, Optional, Tuple, Union

from torch import Tensor

def vocab_parallel_cross_entropy(
    logits_shard: Tensor,
    target: Tensor,
    *,
    group: Optional[Any] = ...,
    weight: Optional[Tensor] = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    inplace_backward: bool = ...,
    class_offset: Optional[int] = ...,
    num_classes: Optional[int] = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
def vocab_parallel_token_logprobs(
    logits_shard: Tensor,
    target: Tensor,
    *,
    group: Optional[Any] = ...,
    entropy: bool = ...,
    temperature: float = ...,
    softcap: Optional[float] = ...,
    ignore_index: int = ...,
    class_offset: Optional[int] = ...,
    num_classes: Optional[int] = ...,
    num_threads: Optional[int] = ...,
) -> Union[Tensor, Tuple[Tensor, Tensor]]: ...
def vocab_parallel_kl_div_logits(
    student_shard: Tensor,
    teacher_shard: Tensor,
    *,
    group: Optional[Any] = ...,
    temperature: float = ...,
    reduction: str = ...,
    t2_scaling: bool = ...,
    labels: Optional[Tensor] = ...,
    ignore_index: int = ...,
    class_offset: Optional[int] = ...,
    num_classes: Optional[int] = ...,
    num_threads: Optional[int] = ...,
) -> Tensor: ...
