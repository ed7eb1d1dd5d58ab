"""What xent does not do is refused with NotImplementedError and a message
naming the argument, never silently ignored: gradients w.r.t. inputs the
kernels treat as constants (a requires_grad tensor there would otherwise get
no gradient, or a wrong one, without a word), options of the PyTorch API
xent does not implement, and operations the loaded libxent predates."""

import pytest

import xent  # noqa: F401
from xent import _lib

from conftest import have_torch


def test_an_operation_missing_from_the_library_names_the_symbol():
    # A library predating an operation still serves the others: the binding
    # resolves on first use and names what is missing.
    op = _lib._Op(_lib.STRUCTS["xent_cross_entropy_args"][0], "xent_cross_entropy_args_init", "xent_no_such_op")
    with pytest.raises(NotImplementedError, match="xent_no_such_op is not in the loaded libxent"):
        op.args()
    # The error is also an XentError (one except clause catches all of xent's).
    with pytest.raises(_lib.XentError):
        op.args()
    # The real operations are unaffected.
    assert _lib.cross_entropy_op.args() is not None


if have_torch():
    import torch

    import xent.torch as xF

    def test_bce_refuses_gradients_wrt_target_weight_and_pos_weight():
        x = torch.randn(4, 6, requires_grad=True)
        y = torch.rand(4, 6)
        w = torch.rand(6)
        for kw in (
            dict(target=y.clone().requires_grad_()),
            dict(target=y, weight=w.clone().requires_grad_()),
            dict(target=y, pos_weight=w.clone().requires_grad_()),
        ):
            with pytest.raises(NotImplementedError, match="detach them"):
                xF.binary_cross_entropy_with_logits(x, **kw)
        # Detached (or under no_grad) they are fine, and match torch.
        got = xF.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=w)
        want = torch.nn.functional.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=w)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            xF.binary_cross_entropy_with_logits(x, y.clone().requires_grad_())

    def test_linear_cross_entropy_takes_class_indices_only():
        h = torch.randn(3, 8)
        w = torch.randn(11, 8)
        with pytest.raises(NotImplementedError, match="class-index targets only"):
            xF.linear_cross_entropy(h, w, torch.rand(3))
        loss = xF.linear_cross_entropy(h, w, torch.tensor([0, 5, 10]))
        want = torch.nn.functional.cross_entropy(h @ w.t(), torch.tensor([0, 5, 10]))
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)

    def test_token_stats_refuses_gradients_wrt_ref_logits():
        x = torch.randn(4, 9, requires_grad=True)
        ref = torch.randn(4, 9, requires_grad=True)
        t = torch.tensor([0, 3, 8, 1])
        with pytest.raises(NotImplementedError, match="ref_logits"):
            xF.token_stats(x, t, ref_logits=ref, kl=True)
        # Detached reference: the KL is differentiable w.r.t. the policy only.
        s = xF.token_stats(x, t, ref_logits=ref.detach(), kl=True)
        s.kl.sum().backward()
        assert x.grad is not None and ref.grad is None
        # Under no_grad nothing is differentiated, so nothing is refused.
        with torch.no_grad():
            xF.token_stats(x, t, ref_logits=ref, kl=True)
