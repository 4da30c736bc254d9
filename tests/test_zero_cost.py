"""The NASWOT zero-cost score and its reward term."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nni_offpolicy import settings as settings_module
from nni_offpolicy.search import zero_cost
from nni_offpolicy.errors import UserError
from nni_offpolicy.search.rewards import RewardModel
from nni_offpolicy.settings import load_settings
from nni_offpolicy.search.zero_cost import ZeroCostScorer, naswot_score

CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def _images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_naswot_is_the_log_determinant_of_the_code_agreement_kernel():
    """Hand-computed: one ReLU over 3 inputs of 2 units; K[i, j] = units where i and j are both on or both off."""
    x = torch.tensor([[1.0, 2.0], [-1.0, 3.0], [-2.0, -1.0]])
    kernel = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    expected = float(torch.linalg.slogdet(kernel)[1]) / 3
    assert naswot_score(nn.Sequential(nn.ReLU()), x) == pytest.approx(expected)


def _naswot_two_products(network: nn.Module, images: torch.Tensor) -> float:
    """The score as the paper writes it: K = C C^T + (1 - C)(1 - C)^T in float64, summed over the ReLUs."""
    n, kernel = images.shape[0], torch.zeros(images.shape[0], images.shape[0], dtype=torch.float64)

    def hook(module, inputs, output):
        codes = (output.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.t()).add_((1.0 - codes) @ (1.0 - codes).t())

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        network.train()
        network(images)
    for handle in handles:
        handle.remove()
    return float(torch.linalg.slogdet(kernel)[1]) / n


@pytest.mark.parametrize("family,arch", [("nb201", CONV), ("nb201", "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"
                                                                    "+|none~0|nor_conv_3x3~1|skip_connect~2|"),
                                         ("darts", "pdarts"), ("darts", "darts_v1")])
def test_the_one_product_kernel_gives_the_papers_score_to_the_last_bit(family, arch):
    """Breakage caught: the single float32 product (2 c_i.c_j - |c_i| - |c_j| + units) drifting from the two
    float64 products it replaces (a rounding, a wrong diagonal or unit count), which would move every NASWOT
    reward and zero-cost pick of the presets."""
    from nni_offpolicy.profiling import build_eval_network
    from search_spaces.genotypes import PUBLISHED

    cell = PUBLISHED[arch] if family == "darts" else arch
    for seed in range(2):
        torch.manual_seed(seed)
        network = build_eval_network(cell, family, layers=2, channels=8, num_classes=10, in_channels=3, input_size=16)
        images = _images(24, seed)
        assert naswot_score(network, images) == _naswot_two_products(network, images)


def test_a_network_that_cannot_tell_images_apart_scores_zero():
    same = _images(1).expand(8, -1, -1, -1).contiguous()
    assert ZeroCostScorer("nb201", same, 1, 4, 10)(CONV, "conv") == 0.0
    # the all-none cell's cells output zeros: only the stem and residual blocks split the images
    scorer = ZeroCostScorer("nb201", _images(), 1, 4, 10)
    assert scorer(CONV, CONV) > scorer(NONE, NONE)


def test_score_is_a_function_of_the_cell_and_leaves_the_global_random_stream_alone():
    """A resumed search (fresh cache, another RNG state) must score a cell exactly as the first run did."""
    images = _images()
    torch.manual_seed(1)
    first = ZeroCostScorer("nb201", images, 1, 4, 10)(CONV, CONV)
    after = torch.rand(1)
    torch.manual_seed(1)
    torch.rand(5)  # another history
    second = ZeroCostScorer("nb201", images, 1, 4, 10)(CONV, CONV)
    assert first == second
    torch.manual_seed(1)
    ZeroCostScorer("nb201", images, 1, 4, 10)(CONV, CONV)
    assert torch.equal(torch.rand(1), after)


def test_reward_multiplies_in_the_zero_cost_term():
    s = load_settings("demo", {"space": "nb201", "layers": "1,1,1", "ops_kept": "3,2,1", "zero_cost": "naswot",
                               "zero_cost_exponent": 4, "zero_cost_target": 10, "zero_cost_images": 16,
                               "zero_cost_channels": 4, "eval_layers": 1, "eval_channels": 4,
                               "size_exponent": -0.1, "size_abs_penalty": 0})
    model = RewardModel(s, "nb201", 10, 3, 16, probe_images=_images())
    from search_spaces.genotypes import nb201_to_sample

    metrics = model.metrics(nb201_to_sample(CONV), CONV)
    size_term = (metrics["params_m"] / 0.3) ** -0.1  # a size term beside it stays in
    assert model.reward(0.5, metrics, 0) == pytest.approx(0.5 * size_term * (metrics["zero_cost"] / 10) ** 4)


def test_zero_cost_settings_are_checked():
    assert settings_module.ZERO_COST_SCORES == zero_cost.ZERO_COST_SCORES
    assert load_settings("demo", {"zero_cost": "none"}).zero_cost is None
    with pytest.raises(UserError, match="unknown zero_cost score 'synflow'; allowed: none, naswot"):
        load_settings("demo", {"zero_cost": "synflow"})
    assert load_settings("demo", {"zero_cost": "naswot"}).zero_cost_images is None  # min(64, reward batch)
    with pytest.raises(UserError, match=r"zero_cost_images \(64\) exceeds the reward batch \(32\)"):
        load_settings("demo", {"zero_cost": "naswot", "zero_cost_images": 64})
    with pytest.raises(UserError, match="zero_cost_channels must be >= 1"):
        load_settings("demo", {"zero_cost_channels": 0})
