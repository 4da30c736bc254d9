"""The learners' interface: one registry is the list of controllers the settings accept, a new learner needs
only a class and an entry, and no module outside learners.py branches on ``settings.controller``; and DARTS'
first-order alpha step (the darts controller)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from nni_offpolicy.search import learners
from nni_offpolicy.search.controller import Decision, OffPolicyController
from nni_offpolicy.errors import UserError
from nni_offpolicy.search.learners import LEARNERS, Learner, RandomSearch, darts_alpha_step, make_learner
from nni_offpolicy.search.progressive import build_decisions
from nni_offpolicy.settings import load_settings
from nni_offpolicy.search.supernet import Supernet
from search_spaces.presets import build_space, initial_edge_ops

PACKAGE = Path(learners.__file__).parent


def test_the_registry_is_what_the_settings_accept():
    for name, cls in LEARNERS.items():
        learner = make_learner(load_settings("demo", {"controller": name}))
        assert type(learner) is cls and cls.name == name
    with pytest.raises(UserError, match="allowed: reinforce, darts, random"):
        load_settings("demo", {"controller": "evolution"})


def test_a_new_learner_is_one_class_and_one_registry_entry(monkeypatch):
    class Frozen(Learner):
        name = "frozen"

        def update(self, *args, **kwargs):
            return {}

    monkeypatch.setitem(LEARNERS, "frozen", Frozen)
    assert isinstance(make_learner(load_settings("demo", {"controller": "frozen"})), Frozen)


def test_random_draws_its_shrink_and_derivation_from_its_own_reproducible_generators():
    learner = RandomSearch(load_settings("demo", {"controller": "random", "seed": 4}))
    draw = lambda stage, purpose: torch.rand(3, generator=learner.choice_generator(stage, purpose))  # noqa: E731
    assert torch.equal(draw(1, "shrink"), draw(1, "shrink"))
    assert not torch.equal(draw(1, "shrink"), draw(1, "derive"))
    assert not torch.equal(draw(1, "shrink"), draw(2, "shrink"))
    assert make_learner(load_settings("demo")).choice_generator(1, "shrink") is None  # REINFORCE: by pi


def test_no_module_but_learners_branches_on_the_controller_setting():
    branch = re.compile(r"\.controller\s*(==|!=|in\b)")  # a lookup in LEARNERS is the interface, not a branch
    offenders = [f"{path.name}:{n}" for path in PACKAGE.rglob("*.py") if path.name != "learners.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if branch.search(line)]
    assert offenders == []


# ------------------------------------------------------------------------------------------------ DARTS' alpha step
class TwoOpNet(nn.Module):
    """A contrived one-edge supernet: op "good" maps x to the right logits, op "bad" to a wrong class; the mixed
    output is w_good * good(x) + w_bad * bad(x)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0))  # a weight, which the alpha step must leave alone
        self.weights = None

    def set_mixed(self, weights):
        self.weights = weights["cell/op_1_0"]

    def forward(self, x):
        good, bad = self.scale * x, self.scale * x.roll(1, dims=1)
        return self.weights[0] * bad + self.weights[1] * good  # options ("bad", "good"): no tie favours good


def test_darts_step_moves_alpha_toward_the_op_with_lower_validation_loss():
    controller = OffPolicyController([Decision("cell/op_1_0", ("bad", "good"), "op")], lr=0.1)
    net = TwoOpNet()
    y = torch.arange(8) % 4
    x = nn.functional.one_hot(y, 4).float()
    losses = []
    for _ in range(10):
        stats = darts_alpha_step(controller, net, [0], x, y)
        assert stats["darts/alpha_grad_norm"] > 0  # softmax(alpha) is not detached
        losses.append(stats["darts/valid_loss"])
    pi = controller.probabilities()["cell/op_1_0"]
    assert pi["good"] > 0.7 > 0.3 > pi["bad"]
    assert losses[-1] < losses[0]
    assert net.scale.grad is None and net.scale.item() == 3.0  # weights frozen: no gradient computed
    assert controller.updates == 10


def test_darts_step_on_the_real_supernet_changes_op_alphas_only():
    edge_ops = initial_edge_ops("darts")
    supernet = Supernet(build_space("darts", edge_ops, layers=3, channels=4, num_classes=4))
    supernet.train()
    controller = OffPolicyController(build_decisions("darts", edge_ops), lr=0.05)
    op_rows = [r for r, d in enumerate(controller.decisions) if d.kind == "op"]
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)
    stats = darts_alpha_step(controller, supernet, op_rows, x, y)
    assert stats["darts/alpha_grad_norm"] > 0 and math.isfinite(stats["darts/valid_loss"])
    alpha = controller.alpha.detach()
    moved = (alpha != 0).any(dim=1)
    assert moved[op_rows].all()
    assert not moved[[r for r in range(len(controller.decisions)) if r not in op_rows]].any()
    assert all(p.grad is None for p in supernet.parameters())
