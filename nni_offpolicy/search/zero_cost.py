"""Zero-cost scores: how promising a cell is, from its untrained evaluation network (a registry, by name).

Why a reward term: a weight-sharing supernet trained for minutes ranks NAS-Bench-201 cells poorly, and early in
training it prefers parameter-free ops because they need no training (the lab log's all-pooling runs). A
zero-cost score rates a network at initialisation from one or two passes over a small batch; it needs no
training, and it is non-differentiable: exactly what the controller's reward takes (R = acc x (score / target)
^ w, see ``rewards.py``), and what ``final_pick=zero-cost`` ranks a last space by.

The scores (``SCORES``; each function's docstring cites its paper and says what it costs), higher = better:

- ``naswot``: Mellor et al. 2021, how differently the ReLUs split the images (one forward pass, no labels);
- ``synflow``: Tanaka et al. 2020, synaptic flow of the network with |weights| on an all-ones image (one forward
  and one backward pass of one image, no labels);
- ``zico``: Li et al. 2023, gradients' mean over their deviation across mini-batches (a forward and a backward
  pass per mini-batch, labels);
- ``snip`` (Lee et al. 2019) and ``grad_norm`` (Abdelfattah et al. 2021): the loss gradient, weighted by the
  weights or not (one forward and one backward pass, labels);
- ``jacob_cov``: Mellor et al. 2020 (v1), how correlated the input Jacobians of the images are (one forward and
  one backward pass, no labels);
- ``params`` and ``flops``: the network's size (``profiling.EvalCostModel``: a table lookup, no pass at all).

A new score is one function registered with ``@register`` and one name in ``zero_cost_names.ZERO_COST_SCORES``
(which the settings read without torch). ``ens:a+b[+c...]`` is a rank ensemble of registered scores
(``ZeroCostScorer``).

Each cell's score is computed once per scorer with weights drawn from a seed derived from the cell itself (every
score of a cell sees the same initial weights), under a forked torch RNG, so a cell scores the same whenever it
is sampled, a resumed search gives the same rewards and the search's own random stream never moves. A score that
comes out NaN or infinite (a singular kernel, a network that cannot tell the images apart) is its documented
fallback, 0.0: below any cell that scores.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.families import EdgeOpLists, Family

from nni_offpolicy.profiling import EvalCostModel, build_eval_network
from nni_offpolicy.search.controller import OffPolicyController
from nni_offpolicy.search.progressive import arch_key, build_decisions, sample_to_arch
from nni_offpolicy.search.zero_cost_names import ZERO_COST_SCORES, components, is_ensemble

REFERENCE_SIZE = 32  # cells an ensemble's per-cell value is a percentile among (ZeroCostScorer.reference_size)
REFERENCE_SEED = 0  # fixed, not the search's seed: a reward stays one function of the cell across seeds
ZICO_BATCHES = 2  # the probe batch's parts ZiCo compares gradients over (two: the fewest with a deviation)
JACOB_COV_K = 1e-5  # Mellor et al. v1's regulariser of the eigenvalues


@dataclass(frozen=True)
class Cell:
    """What a score reads of one cell: a fresh copy of its untrained network (``build()``: the same weights,
    seeded from the cell, at every call, so a score may alter the one it gets), the probe batch, and the
    network's ``(params, MACs)``."""

    build: Callable[[], nn.Module]
    images: torch.Tensor
    labels: torch.Tensor | None
    price: Callable[[], tuple[int, int]]


@dataclass(frozen=True)
class Score:
    """A registered score: its function, what it costs, whether it needs labels, and its value where the
    function comes out NaN or infinite."""

    name: str
    fn: Callable[[Cell], float]
    cost: str
    labels: bool
    fallback: float = 0.0

    def __call__(self, cell: Cell) -> float:
        value = float(self.fn(cell))
        return value if math.isfinite(value) else self.fallback


SCORES: dict[str, Score] = {}


def register(name: str, cost: str, labels: bool = False, fallback: float = 0.0) -> Callable:
    """Register ``fn(cell: Cell) -> float`` under ``name`` (one of ``zero_cost_names.ZERO_COST_SCORES``)."""
    if name not in ZERO_COST_SCORES:
        raise RuntimeError(f"zero-cost score {name!r} is not in zero_cost_names.ZERO_COST_SCORES")

    def add(fn: Callable[[Cell], float]) -> Callable[[Cell], float]:
        SCORES[name] = Score(name, fn, cost, labels, fallback)
        return fn
    return add


def _logits(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = network(x)
    return out[0] if isinstance(out, tuple) else out  # an evaluation network returns (logits, aux or None)


def _weighted_layers(network: nn.Module) -> list[nn.Module]:
    """The convolutions and linear layers: what the gradient scores sum over (as their papers' code does)."""
    return [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _loss_gradients(network: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Cross-entropy on the probe batch, back-propagated into the weights (batch statistics: an untrained network
    has no running statistics)."""
    network.train()
    network.zero_grad(set_to_none=True)
    with torch.enable_grad():
        F.cross_entropy(_logits(network, images), labels).backward()


def naswot_score(network: nn.Module, images: torch.Tensor) -> float:
    """log|det K| of the ReLU-code agreement kernel over ``images``, divided by the batch size (so a score does
    not grow with the number of images and a target of ~1-10 is natural)."""
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # agreements = both on + both off = 2 c_i.c_j - |c_i| - |c_j| + units: one float32 product instead of two
        # float64 ones (a third of a DARTS cell's scoring time), exact while a layer has < 2^24 units (counts of
        # 0/1 products are integers float32 holds exactly), so every score is the same to the last bit
        codes = (output.detach().reshape(n, -1) > 0).to(torch.float32)
        units = codes.shape[1]
        if units >= 2 ** 24:
            codes64 = codes.double()
            kernel.add_(codes64 @ codes64.t()).add_((1.0 - codes64) @ (1.0 - codes64).t())
            return
        both_on = (codes @ codes.t()).double()
        on = both_on.diagonal().clone()
        kernel.add_(2.0 * both_on - on[:, None] - on[None, :] + units)

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            network.train()  # batch statistics, as in the paper: an untrained net has no running statistics
            network(images)
    finally:
        for handle in handles:
            handle.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    if not bool(sign > 0) or not torch.isfinite(logdet):
        return 0.0  # a singular kernel: images the network cannot tell apart at all
    return float(logdet) / n


@register("naswot", cost="one forward pass of the probe batch, no labels")
def naswot(cell: Cell) -> float:
    """NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021): for each image the binary
    code of which ReLUs are active, the kernel K[i, j] = number of units on which images i and j agree, the score
    log|det K| per image (``naswot_score``). Networks whose codes tell the images apart train well. Fallback 0.0
    (a singular kernel)."""
    return naswot_score(cell.build(), cell.images)


def _remove_batch_norm(network: nn.Module) -> None:
    """Every BatchNorm replaced by an identity (SynFlow's linearised network has none: NASLib's ``bn=False``)."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())


@register("synflow", cost="one forward and one backward pass of one all-ones image in float64, no labels")
def synflow(cell: Cell) -> float:
    """SynFlow (Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
    flow", NeurIPS 2020; as a NAS score: Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021):
    sum over the convolutions' and linear layers' weights of |θ ⊙ ∂R/∂θ|, where R is the sum of the logits of
    the network with every parameter replaced by its absolute value, BatchNorm removed, on one all-ones image.
    In float64: the sum grows with depth (about e^213 for P-DARTS' cell in a 20-cell, 36-channel network;
    float32 ends at e^88). Returned as its natural log: the same ranks, and a number a reward's
    (score / target) ^ w can take. Fallback 0.0 (a sum of 0, or an overflow: past about 60 DARTS cells)."""
    network = cell.build()
    _remove_batch_norm(network)
    network.double().eval()  # eval: no auxiliary head; with BatchNorm gone nothing else differs
    with torch.no_grad():
        for param in network.parameters():
            param.abs_()
    ones = torch.ones(1, *cell.images.shape[1:], dtype=torch.float64)
    with torch.enable_grad():
        _logits(network, ones).sum().backward()
    total = sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in _weighted_layers(network)
                if m.weight.grad is not None)
    return math.log(total) if total > 0 else math.nan


@register("zico", cost=f"a forward and a backward pass of each of {ZICO_BATCHES} parts of the probe batch, labels",
          labels=True)
def zico(cell: Cell) -> float:
    """ZiCo (Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients", ICLR 2023): the
    cross-entropy's weight gradients on ``ZICO_BATCHES`` mini-batches of the probe batch; per convolution or
    linear layer log(Σ_θ mean|g_θ| / std g_θ) over the weights whose gradient varies (std over the mini-batches,
    the authors' code's mean of |g| and population std), summed over the layers. Fallback 0.0."""
    network = cell.build()
    layers = _weighted_layers(network)
    grads: list[list[torch.Tensor]] = [[] for _ in layers]
    for images, labels in zip(torch.tensor_split(cell.images, ZICO_BATCHES),
                              torch.tensor_split(cell.labels, ZICO_BATCHES)):
        _loss_gradients(network, images, labels)
        for found, layer in zip(grads, layers):
            if layer.weight.grad is not None:
                found.append(layer.weight.grad.detach().reshape(-1).double())
    total = 0.0
    for found in grads:
        if len(found) < 2:
            continue  # a layer the loss does not reach (DARTS' auxiliary head)
        g = torch.stack(found)
        std = g.std(dim=0, unbiased=False)
        varies = std > 0
        ratio = float((g.abs().mean(dim=0)[varies] / std[varies]).sum())
        if ratio > 0:
            total += math.log(ratio)
    return total


@register("snip", cost="one forward and one backward pass of the probe batch, labels", labels=True)
def snip(cell: Cell) -> float:
    """SNIP (Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019; as a NAS
    score: Abdelfattah et al., ICLR 2021): Σ |θ ⊙ ∂L/∂θ| over the convolutions' and linear layers' weights, L the
    cross-entropy on the probe batch. Fallback 0.0."""
    network = cell.build()
    _loss_gradients(network, cell.images, cell.labels)
    return sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in _weighted_layers(network)
               if m.weight.grad is not None)


@register("grad_norm", cost="one forward and one backward pass of the probe batch, labels", labels=True)
def grad_norm(cell: Cell) -> float:
    """Grad-norm (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021): Σ over the
    convolutions and linear layers of ||∂L/∂θ||₂, L the cross-entropy on the probe batch. Fallback 0.0."""
    network = cell.build()
    _loss_gradients(network, cell.images, cell.labels)
    return sum(float(m.weight.grad.norm()) for m in _weighted_layers(network) if m.weight.grad is not None)


@register("jacob_cov", cost="one forward and one backward pass of the probe batch (to the images), no labels")
def jacob_cov(cell: Cell) -> float:
    """Jacobian covariance (Mellor et al., "Neural Architecture Search without Training", arXiv v1, 2020): J_i =
    ∂(Σ logits)/∂x_i for each probe image, C the correlation matrix of the J_i, λ its eigenvalues; the paper's
    score is −Σ (log(λ + k) + 1/(λ + k)), k = 1e-5, at most −n. Returned as n / Σ (log(λ + k) + 1/(λ + k)): a
    monotone function of the paper's score (the same ranks), in (0, 1], 1 for uncorrelated Jacobians, positive
    so a reward's (score / target) ^ w can take it. Fallback 0.0 (a constant Jacobian: no correlation)."""
    network = cell.build()
    network.train()
    images = cell.images.clone().requires_grad_(True)
    with torch.enable_grad():
        _logits(network, images).sum().backward()
    jacobians = images.grad.reshape(images.shape[0], -1).double()
    corr = torch.corrcoef(jacobians)
    if not bool(torch.isfinite(corr).all()):
        return math.nan
    shifted = torch.linalg.eigvalsh(corr) + JACOB_COV_K
    return images.shape[0] / float((shifted.log() + 1.0 / shifted).sum())


@register("params", cost="no pass: a sum of per-edge prices (profiling.EvalCostModel)")
def params(cell: Cell) -> float:
    """#Params (as a NAS baseline score: Abdelfattah et al., ICLR 2021; Ning et al., "Evaluating Efficient
    Performance Estimators of Neural Architectures", NeurIPS 2021): the scored network's parameters, in
    millions (``profiling.EvalCostModel``, as the reward's size term prices them)."""
    return cell.price()[0] / 1e6


@register("flops", cost="no pass: a sum of per-edge prices (profiling.EvalCostModel)")
def flops(cell: Cell) -> float:
    """#FLOPs (as a NAS baseline score: Abdelfattah et al., ICLR 2021): the scored network's multiply-accumulates
    on one image, in millions (``profiling.EvalCostModel``)."""
    return cell.price()[1] / 1e6


if tuple(SCORES) != ZERO_COST_SCORES:  # the names settings accept and the scores that run are the same
    raise RuntimeError(f"zero-cost scores {list(SCORES)} differ from zero_cost_names {list(ZERO_COST_SCORES)}")


# ---------------------------------------------------------------- rank ensembles

def rank_fractions(values: Mapping[str, float]) -> dict[str, float]:
    """Each key's rank among ``values`` (1 the lowest, ties sharing their mean rank) divided by their number: in
    (0, 1], 1 for the highest alone."""
    order = sorted(values, key=values.__getitem__)
    out: dict[str, float] = {}
    i, n = 0, len(order)
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        for key in order[i: j + 1]:
            out[key] = (i + j + 2) / 2 / n  # ranks i+1 .. j+1, averaged
        i = j + 1
    return out


def mean_rank(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``scores``: component -> cell key -> value, every component over the same cells. Each cell's mean over the
    components of its ``rank_fractions`` among those cells: in (0, 1], higher better."""
    ranks = [rank_fractions(values) for values in scores.values()]
    return {key: sum(r[key] for r in ranks) / len(ranks) for key in ranks[0]}


def percentile(value: float, reference: Sequence[float]) -> float:
    """Where ``value`` stands among ``reference`` as ``rank_fractions`` would place it among the reference and
    itself: (1 + #below + #equal / 2) / (len(reference) + 1), in (0, 1]."""
    below = sum(1 for r in reference if r < value)
    equal = sum(1 for r in reference if r == value)
    return (1 + below + equal / 2) / (len(reference) + 1)


def reference_cells(family: Family | str, edge_ops: EdgeOpLists, nodes: int = 4, size: int = REFERENCE_SIZE,
                    seed: int = REFERENCE_SEED) -> dict[str, Any]:
    """``size`` cells drawn by the search's own sampler (a controller's uniform behaviour policy) over
    ``edge_ops`` with a fixed ``seed``, by key (a cell drawn twice counts once)."""
    controller = OffPolicyController(build_decisions(family, edge_ops), behaviour="uniform", seed=seed)
    samples = [controller.to_sample(actions) for actions in controller.sample(size).actions]
    return {arch_key(family, sample, nodes): sample_to_arch(family, sample, nodes) for sample in samples}


def cell_seed(key: str) -> int:
    """The seed of a cell's untrained weights: a function of its key alone."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:7], "big")


class ZeroCostScorer:
    """Scores architectures of one family at a fixed network size on a fixed probe batch.

    ``score`` is a registered name or a rank ensemble ``ens:a+b[+c...]``. One cache per scorer, i.e. per
    (network size, probe batch): each component's score of each cell key, computed once, so an ensemble and its
    components (and the reference cells) never recompute.

    - ``scorer(arch, key)``: one cell's value. A single score's raw value; an ensemble's mean over its
      components of the cell's ``percentile`` among ``reference_size`` cells of ``reference_ops`` drawn once with
      a fixed seed (``reference_cells``; scored at the first such call): what a reward, scoring one cell at a
      time, can compare a cell with.
    - ``scorer.score_set(cells)``: the values of cells scored together (a final pick's whole space, a study's
      sample). A single score's raw values (what ``scorer(arch, key)`` gives); an ensemble's ``mean_rank`` among
      those cells.

    ``labels``: the probe batch's labels, needed by the scores that take a loss (``Score.labels``).
    """

    def __init__(self, family: Family | str, images: torch.Tensor, layers: int, channels: int, num_classes: int,
                 score: str = "naswot", labels: torch.Tensor | None = None,
                 reference_ops: EdgeOpLists | None = None, nodes: int = 4, reference_size: int = REFERENCE_SIZE):
        self.components = components(score)  # ValueError naming what is allowed
        self.score, self.ensemble = score, is_ensemble(score)
        needs = [name for name in self.components if SCORES[name].labels]
        if needs and labels is None:
            raise ValueError(f"zero-cost score {needs[0]} needs the probe batch's labels")
        if reference_size < 1:
            raise ValueError(f"reference_size must be >= 1, got {reference_size}")
        self.family, self.layers, self.channels, self.num_classes = family, layers, channels, num_classes
        self.images = images.detach().float().cpu().contiguous()
        self.labels = None if labels is None else labels.detach().cpu().long()
        self.reference_ops, self.nodes, self.reference_size = reference_ops, nodes, reference_size
        self._cache: dict[tuple[str, str], float] = {}
        self._reference: dict[str, list[float]] | None = None
        self._cost: EvalCostModel | None = None

    def _price(self, arch: Any) -> tuple[int, int]:
        if self._cost is None:
            self._cost = EvalCostModel(self.family, layers=self.layers, channels=self.channels,
                                       num_classes=self.num_classes, in_channels=self.images.shape[1],
                                       input_size=self.images.shape[2])
        return self._cost.cost(arch)

    def component(self, name: str, arch: Any, key: str) -> float:
        """Score ``name`` of the cell ``key`` (cached)."""
        if (name, key) not in self._cache:
            seed = cell_seed(key)

            def build() -> nn.Module:
                torch.manual_seed(seed)
                return build_eval_network(arch, self.family, layers=self.layers, channels=self.channels,
                                          num_classes=self.num_classes, in_channels=self.images.shape[1],
                                          input_size=self.images.shape[2])

            with torch.random.fork_rng(devices=[]):  # never moves the search's own random stream
                self._cache[(name, key)] = SCORES[name](Cell(build, self.images, self.labels,
                                                             lambda: self._price(arch)))
        return self._cache[(name, key)]

    def __call__(self, arch: Any, key: str) -> float:
        if not self.ensemble:
            return self.component(self.components[0], arch, key)
        reference = self._reference_scores()
        return sum(percentile(self.component(name, arch, key), reference[name])
                   for name in self.components) / len(self.components)

    def score_set(self, cells: Mapping[str, Any],
                  progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, float]:
        """Each of ``cells`` (key -> architecture) scored together with the others; ``progress`` wraps the loop
        over the cells (a progress bar)."""
        keys = list(cells)
        scores: dict[str, dict[str, float]] = {name: {} for name in self.components}
        for key in (progress(keys) if progress is not None else keys):
            for name in self.components:
                scores[name][key] = self.component(name, cells[key], key)
        if not self.ensemble:
            return scores[self.components[0]]
        return mean_rank(scores) if keys else {}

    def _reference_scores(self) -> dict[str, list[float]]:
        if self._reference is None:
            if self.reference_ops is None:
                raise ValueError(f"zero_cost={self.score} scored one cell at a time needs reference_ops: the space "
                                 f"its reference cells are drawn from")
            cells = reference_cells(self.family, self.reference_ops, self.nodes, self.reference_size)
            self._reference = {name: [self.component(name, arch, key) for key, arch in cells.items()]
                               for name in self.components}
        return self._reference
