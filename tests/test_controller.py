"""The controller's maths, without any network."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from nni_offpolicy.search.controller import (Decision, OffPolicyController, Samples, behaviour_probs,
                                      policy_gradient_loss)

TINY = [Decision("a", (0, 1)), Decision("b", (0, 1, 2)), Decision("c", (0, 1))]


def exact_gradient(controller: OffPolicyController, reward_table: torch.Tensor) -> torch.Tensor:
    """grad of E_pi[R] by enumerating all 12 architectures."""
    log_pi = controller.log_pi()
    expected = 0.0
    for a in itertools.product(*(range(len(d.options)) for d in controller.decisions)):
        log_p = sum(log_pi[d, a[d]] for d in range(len(a)))
        expected = expected + reward_table[a] * log_p.exp()
    return torch.autograd.grad(expected, controller.alpha)[0] * controller.mask


def estimated_gradient(controller, reward_fn, n, importance, truncation=math.inf, baseline=0.0):
    samples = controller.sample(n)
    samples.rewards = reward_fn(samples.actions)
    loss, _ = policy_gradient_loss(controller.log_pi(), samples, baseline, truncation, importance)
    return -torch.autograd.grad(loss, controller.alpha)[0] * controller.mask


@pytest.fixture
def controller_factory():
    def make(behaviour, epsilon=0.0, seed=1):
        c = OffPolicyController(TINY, behaviour=behaviour, epsilon=epsilon, seed=seed)
        with torch.no_grad():
            c.alpha.copy_(torch.randn(c.alpha.shape, generator=torch.Generator().manual_seed(7)) * 0.7)
        return c
    return make


@pytest.mark.parametrize("behaviour,epsilon", [("uniform", 0.0), ("egreedy", 0.5), ("multinomial", 0.3),
                                               ("on-policy", 0.0)])
def test_trajectory_estimator_matches_exact_gradient(controller_factory, behaviour, epsilon):
    torch.manual_seed(0)
    table = torch.rand(2, 3, 2)  # an arbitrary, non-additive reward
    c = controller_factory(behaviour, epsilon)
    exact = exact_gradient(c, table)
    est = estimated_gradient(c, lambda a: table[a[:, 0], a[:, 1], a[:, 2]], 400_000, "trajectory", baseline=0.4)
    assert torch.allclose(est, exact, atol=3e-3), (est, exact)
    assert exact.abs().max() > 0.01  # the comparison is not vacuous


def test_per_decision_estimator_is_exact_for_additive_rewards(controller_factory):
    parts = [torch.tensor([0.1, 0.7]), torch.tensor([0.3, 0.0, 0.9]), torch.tensor([0.5, 0.2])]
    table = parts[0][:, None, None] + parts[1][None, :, None] + parts[2][None, None, :]
    c = controller_factory("uniform")
    exact = exact_gradient(c, table)
    est = estimated_gradient(c, lambda a: table[a[:, 0], a[:, 1], a[:, 2]], 400_000, "per-decision")
    assert torch.allclose(est, exact, atol=3e-3)


def test_on_policy_ratios_are_one(controller_factory):
    c = controller_factory("on-policy")
    s = c.sample(50)
    s.rewards = torch.rand(50)
    _, stats = policy_gradient_loss(c.log_pi(), s, 0.0, 5.0, "per-decision")
    assert stats["importance/mean"] == pytest.approx(1.0, abs=1e-5)
    assert stats["importance/truncated_frac"] == 0.0


def test_behaviour_probabilities_are_exact():
    alpha = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, float("-inf")]]).clamp(min=-50)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    pi = torch.softmax(alpha.masked_fill(~mask, float("-inf")), -1)
    mu = behaviour_probs(pi, alpha, mask, "egreedy", epsilon=0.3)
    assert torch.allclose(mu[0], torch.tensor([0.7 + 0.1, 0.1, 0.1]))
    assert torch.allclose(mu[1], torch.tensor([0.15, 0.85, 0.0]))
    mu = behaviour_probs(pi, alpha, mask, "multinomial", epsilon=0.0, temperature=1.0)
    assert torch.allclose(mu, pi)
    assert torch.allclose(behaviour_probs(pi, alpha, mask, "uniform")[1], torch.tensor([0.5, 0.5, 0.0]))
    # recorded log mu equals the log of the probability the sample was drawn with
    c = OffPolicyController(TINY, behaviour="egreedy", epsilon=0.2)
    s = c.sample(20)
    mu = c.mu()
    assert torch.allclose(s.log_mu, mu[torch.arange(3)[None, :], s.actions].log())


def synthetic_space(n_edges=6, n_ops=5):
    return [Decision(f"e{i}", tuple(f"op{k}" for k in range(n_ops))) for i in range(n_edges)]


@pytest.mark.parametrize("behaviour,epsilon", [("uniform", 0.0), ("egreedy", 0.3), ("on-policy", 0.0)])
def test_controller_finds_the_best_op_per_edge(behaviour, epsilon):
    """Each edge has one best op (a different one per edge); the reward is the share of edges that got it."""
    decisions = synthetic_space()
    best = torch.tensor([3, 0, 4, 1, 2, 3])
    c = OffPolicyController(decisions, behaviour=behaviour, epsilon=epsilon, lr=0.05, seed=3)
    updates = 300  # the stated budget
    for _ in range(updates):
        s = c.sample(10)
        rewards = (s.actions == best).float().mean(dim=1)
        c.update(s, rewards)
    assert torch.equal(c.greedy(), best), (c.greedy(), best)


def weights_used(log_pi_all: torch.Tensor, samples, truncation: float, importance: str) -> torch.Tensor:
    """The importance weights the surrogate loss really multiplies each log pi by, read off its gradient.

    With advantage 1 (reward 1, baseline 0) and one sample, d loss / d log_pi[d, a_d] = -w_d (per-decision) or
    -w (trajectory, the same for every d): the weights in the gradient, not the ratio the stats report."""
    used = []
    for row in range(samples.actions.shape[0]):
        one = Samples(samples.actions[row:row + 1], samples.log_mu[row:row + 1], torch.ones(1))
        leaf = log_pi_all.detach().clone().requires_grad_(True)
        loss, _ = policy_gradient_loss(leaf, one, 0.0, truncation, importance)
        (grad,) = torch.autograd.grad(loss, leaf)
        used.append(-grad[torch.arange(grad.shape[0]), one.actions[0]])
    return torch.stack(used)  # [n, D]


@pytest.mark.parametrize("importance", ["per-decision", "trajectory"])
def test_truncation_caps_weights(importance):
    """Breakage caught: importance weights not truncated (the gradient then carries ratios up to ~3 here, per
    decision, and ~12 per trajectory, instead of at most c = 1.2)."""
    c = OffPolicyController(TINY, behaviour="uniform")
    with torch.no_grad():
        c.alpha.copy_(torch.tensor([[5.0, -5.0, 0.0], [-5.0, -5.0, 5.0], [5.0, -5.0, 0.0]]))
    s = c.sample(200)
    s.rewards = torch.ones(200)
    log_pi = c.log_pi().detach()
    ratio = (log_pi[torch.arange(3)[None, :], s.actions] - s.log_mu).exp()  # pi/mu of each decision, [n, D]
    if importance == "trajectory":
        ratio = ratio.prod(dim=1, keepdim=True).expand_as(ratio)
    assert ratio.max() > 2 * 1.2 and (ratio < 1.2).any()  # some ratios far above the cap, some below it
    used = weights_used(log_pi, s, 1.2, importance)
    assert used.max() <= 1.2 + 1e-6
    assert torch.allclose(used, ratio.clamp(max=1.2), rtol=1e-5, atol=1e-6)  # capped ones at c, the rest as is
    _, stats = policy_gradient_loss(log_pi, s, 0.0, 1.2, importance)
    assert stats["importance/truncated_frac"] == pytest.approx(float((ratio[:, :1 if importance == "trajectory"
                                                                            else None] > 1.2).float().mean()))


def test_replay_and_state_round_trip():
    c = OffPolicyController(TINY, replay_size=20, replay_samples=5, seed=4)
    for _ in range(3):
        s = c.sample(4)
        c.update(s, torch.rand(4))
    assert len(c.replay) == 12
    clone = OffPolicyController(TINY, replay_size=20, replay_samples=5, seed=99)
    clone.load_state(c.state())
    s1, s2 = c.sample(6), clone.sample(6)
    assert torch.equal(s1.actions, s2.actions)
    r = torch.rand(6)
    c.update(s1, r)
    clone.update(s2, r)
    assert torch.allclose(c.alpha, clone.alpha)
