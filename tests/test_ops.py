"""The candidate ops' own code paths: what they compute must not depend on the layout a fast path uses."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from search_spaces.ops import MaxPool2d, build_op


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (7, 2)])
@pytest.mark.parametrize("shape", [(4, 8, 32, 32), (3, 5, 15, 17)])
def test_channels_last_max_pool_equals_pytorchs_in_values_and_gradients(kernel, stride, shape):
    """Breakage caught: the CPU fast path's padding, stride or layout round trip changing a value or a gradient
    (odd sizes and channel counts included), or its output left channels-last for the next op."""
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    ours, theirs = MaxPool2d(kernel, stride, kernel // 2), nn.MaxPool2d(kernel, stride, kernel // 2)
    y = ours(x)
    assert torch.equal(y, theirs(x)) and y.is_contiguous()
    g = torch.randn_like(y)
    assert torch.equal(torch.autograd.grad((y * g).sum(), x)[0], torch.autograd.grad((theirs(x) * g).sum(), x)[0])


def test_the_max_pool_ops_are_built_on_the_fast_pool():
    for name in ("max_pool_3x3", "max_pool_5x5", "max_pool_7x7"):
        assert isinstance(build_op(name, 8, 1), MaxPool2d)
