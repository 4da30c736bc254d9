"""The off-policy REINFORCE controller: pure tensor maths over categorical decisions.

It knows decisions (a label and its options), not networks. The target policy is pi = softmax(alpha) per
decision; samples come from a behaviour policy mu whose exact probabilities are recorded, and the update is the
importance-weighted policy gradient  mean_s  w_s * (R_s - b) * grad log pi(a_s),  with per-decision ratios
pi_d/mu_d truncated at c (low variance; exact when the reward is additive over decisions or mu = pi) or the
trajectory ratio prod_d pi_d/mu_d (unbiased without truncation, but it explodes over ~28 decisions).
All decisions live in one padded [D, K] tensor so sampling and the update are a handful of vectorised ops.
"""
from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Decision:
    label: str
    options: tuple  # op names, or input pairs
    kind: str = "op"  # "op" | "input"


@dataclass
class Samples:
    actions: torch.Tensor  # long [n, D]: option index per decision
    log_mu: torch.Tensor  # [n, D]: log behaviour probability of each chosen option
    rewards: torch.Tensor | None = None  # [n]


def padded_mask(decisions: Sequence[Decision]) -> torch.Tensor:
    k = max(len(d.options) for d in decisions)
    mask = torch.zeros(len(decisions), k, dtype=torch.bool)
    for row, d in enumerate(decisions):
        mask[row, : len(d.options)] = True
    return mask


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.masked_fill(~mask, NEG_INF), dim=-1)


def behaviour_probs(pi: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor, behaviour: str, epsilon: float = 0.0,
                    temperature: float = 1.0) -> torch.Tensor:
    """mu per decision [D, K]: uniform, eps-greedy on pi, tempered multinomial mixed with eps-uniform, or pi."""
    uniform = mask.float() / mask.sum(dim=-1, keepdim=True)
    if behaviour == "uniform":
        return uniform
    if behaviour == "on-policy":
        return pi
    if behaviour == "egreedy":
        greedy = torch.zeros_like(pi).scatter_(1, pi.argmax(dim=-1, keepdim=True), 1.0)
        return (1.0 - epsilon) * greedy + epsilon * uniform
    if behaviour == "multinomial":
        tempered = torch.softmax((alpha / temperature).masked_fill(~mask, NEG_INF), dim=-1)
        return (1.0 - epsilon) * tempered + epsilon * uniform
    raise ValueError(f"unknown behaviour policy {behaviour!r}")


def policy_gradient_loss(log_pi_all: torch.Tensor, samples: Samples, baseline: float, truncation: float,
                         importance: str) -> tuple[torch.Tensor, dict[str, float]]:
    """Surrogate loss whose gradient is minus the importance-weighted REINFORCE estimate."""
    log_pi = log_pi_all[torch.arange(log_pi_all.shape[0]).unsqueeze(0), samples.actions]  # [n, D]
    advantage = samples.rewards - baseline  # [n]
    with torch.no_grad():
        log_ratio = log_pi.detach() - samples.log_mu
        if importance == "per-decision":
            ratio = log_ratio.exp()
            weights = ratio.clamp(max=truncation)
        else:
            ratio = log_ratio.sum(dim=1).exp()
            weights = ratio.clamp(max=truncation)
    if importance == "per-decision":
        loss = -(weights * log_pi).sum(dim=1).mul(advantage).mean()
    else:
        loss = -(weights * log_pi.sum(dim=1) * advantage).mean()
    stats = {"importance/mean": float(ratio.mean()), "importance/max": float(ratio.max()),
             "importance/truncated_frac": float((ratio > truncation).float().mean())}
    return loss, stats


class OffPolicyController(nn.Module):
    """Target policy softmax(alpha), a behaviour policy to sample from, an EMA baseline, optional replay."""

    def __init__(self, decisions: Sequence[Decision], behaviour: str = "uniform", epsilon: float = 0.0,
                 temperature: float = 1.0, lr: float = 5e-3, truncation: float = 5.0,
                 importance: str = "per-decision", baseline_decay: float = 0.9, entropy_weight: float = 0.0,
                 replay_size: int = 0, replay_samples: int = 0, seed: int = 0):
        super().__init__()
        self.decisions = list(decisions)
        self.register_buffer("mask", padded_mask(self.decisions))
        self.alpha = nn.Parameter(torch.zeros(self.mask.shape))
        self.behaviour, self.epsilon, self.temperature = behaviour, epsilon, temperature
        self.truncation = truncation if truncation > 0 else math.inf
        self.importance = importance
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.baseline: float | None = None
        self.replay: deque = deque(maxlen=replay_size) if replay_size > 0 else deque(maxlen=1)
        self.replay_size, self.replay_samples = replay_size, replay_samples
        self.optimizer = torch.optim.Adam([self.alpha], lr=lr, betas=(0.5, 0.999))
        self.generator = torch.Generator().manual_seed(seed)
        self.updates = 0

    # --- policies
    def log_pi(self) -> torch.Tensor:
        return masked_log_softmax(self.alpha, self.mask)

    def pi(self) -> torch.Tensor:
        return self.log_pi().exp().detach()

    def mu(self) -> torch.Tensor:
        with torch.no_grad():
            return behaviour_probs(self.pi(), self.alpha.detach(), self.mask, self.behaviour, self.epsilon,
                                   self.temperature)

    def sample(self, n: int, policy: str | None = None) -> Samples:
        """n architectures from mu (or from ``policy``: 'target' for pi, or any behaviour name)."""
        with torch.no_grad():
            if policy in (None, "behaviour"):
                probs = self.mu()
            elif policy == "target":
                probs = self.pi()
            else:
                probs = behaviour_probs(self.pi(), self.alpha.detach(), self.mask, policy, self.epsilon,
                                        self.temperature)
            actions = torch.multinomial(probs, n, replacement=True, generator=self.generator).T  # [n, D]
            rows = torch.arange(len(self.decisions)).unsqueeze(0)
            log_mu = probs[rows, actions].log()
        return Samples(actions=actions, log_mu=log_mu)

    def greedy(self) -> torch.Tensor:
        return self.alpha.detach().masked_fill(~self.mask, NEG_INF).argmax(dim=-1)

    # --- learning
    def update(self, samples: Samples, rewards: torch.Tensor) -> dict[str, float]:
        """One Adam step on alpha from fresh samples (plus replayed ones, re-weighted under the current pi)."""
        rewards = rewards.detach().float().cpu()
        fresh = Samples(samples.actions, samples.log_mu, rewards)
        batch = fresh
        if self.replay_size > 0 and self.replay_samples > 0 and len(self.replay) > 0:
            picks = torch.randint(len(self.replay), (min(self.replay_samples, len(self.replay)),),
                                  generator=self.generator)
            old = [self.replay[int(i)] for i in picks]
            batch = Samples(torch.cat([samples.actions] + [o[0].unsqueeze(0) for o in old]),
                            torch.cat([samples.log_mu] + [o[1].unsqueeze(0) for o in old]),
                            torch.cat([rewards] + [o[2].reshape(1) for o in old]))
        mean_reward = float(rewards.mean())
        if self.baseline is None:
            self.baseline = mean_reward
        log_pi_all = self.log_pi()
        loss, stats = policy_gradient_loss(log_pi_all, batch, self.baseline, self.truncation, self.importance)
        entropy = self.entropy()
        if self.entropy_weight:
            loss = loss - self.entropy_weight * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean_reward
        if self.replay_size > 0:
            for a, lm, r in zip(samples.actions, samples.log_mu, rewards):
                self.replay.append((a.clone(), lm.clone(), r.clone()))
        self.updates += 1
        stats.update({"controller/baseline": self.baseline, "controller/entropy": float(entropy.detach()),
                      "controller/loss": float(loss.detach())})
        return stats

    def entropy(self) -> torch.Tensor:
        """Mean entropy of pi over decisions (nats)."""
        log_pi = self.log_pi()
        return -(log_pi.exp() * log_pi.masked_fill(~self.mask, 0.0)).sum(dim=-1).mean()

    # --- translation and persistence
    def to_sample(self, actions: torch.Tensor) -> dict[str, Any]:
        sample: dict[str, Any] = {}
        for d, a in zip(self.decisions, actions.tolist()):
            option = d.options[a]
            sample[d.label] = sorted(option) if d.kind == "input" else option
        return sample

    def probabilities(self) -> dict[str, dict[str, float]]:
        """pi per decision as {label: {option: probability}} (input pairs written 'i+j')."""
        pi = self.pi()
        out = {}
        for row, d in enumerate(self.decisions):
            out[d.label] = {(f"{o[0]}+{o[1]}" if d.kind == "input" else str(o)): float(pi[row, k])
                            for k, o in enumerate(d.options)}
        return out

    def state(self) -> dict[str, Any]:
        return {"alpha": self.alpha.detach().clone(), "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "baseline": self.baseline, "replay": list(self.replay), "generator": self.generator.get_state(),
                "updates": self.updates}

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.replay.clear()
        self.replay.extend(state["replay"])
        self.generator.set_state(state["generator"])
        self.updates = state["updates"]
