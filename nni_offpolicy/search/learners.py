"""How α learns: one class per learner (``settings.controller``), behind one small interface.

The search loop (``search.loop.ProgressiveSearch``, and the table reward source that reuses it) asks its learner what
it needs to know instead of branching on the settings string: which policy the weight steps' paths and the
reward samples come from, how one controller step updates α from those samples' rewards, what the Matthew
measure reads as the current pick, and how a stage's shrinking and the derivation choose (by π, or uniformly at
random with a generator of their own). The controller (``controller.py``) stays policy maths only; the space
knows nothing of learners. This mirrors NNI's one-shot strategies (DARTS, RandomOneShot, ENAS), which subclass
one strategy rather than switch on a name.

A new learner is one ``Learner`` subclass and one entry in ``LEARNERS`` (``search.registry``, where settings check
the name without importing this module).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from nni_offpolicy.search.registry import LEARNERS, fill

if TYPE_CHECKING:  # annotations only: importing these here would tie the learners to the supernet's imports
    from nni_offpolicy.search.accel import Accel
    from nni_offpolicy.search.controller import OffPolicyController, Samples
    from nni_offpolicy.search.replicas import Replicas
    from nni_offpolicy.settings import SearchSettings
    from nni_offpolicy.search.supernet import Supernet


class Learner:
    """The REINFORCE defaults; subclasses change what differs.

    Class attributes, read by the loop:
    ``path_policy`` — the policy a path-mode weight step samples its path from (None: the behaviour policy);
    ``sample_policy`` — the policy of the architectures drawn at each controller step and scored for rewards;
    ``inputs`` — the derivation's input rule (``progressive.derive``'s ``inputs``);
    ``learns_from_rewards`` — whether α can learn from reward numbers alone (the table reward source has no
    supernet, so no gradient)."""

    name = "reinforce"
    path_policy: str | None = None
    sample_policy: str | None = None
    inputs = "pair"
    learns_from_rewards = True

    def __init__(self, settings: "SearchSettings"):
        self.settings = settings

    def update(self, controller: "OffPolicyController", samples: "Samples", rewards: list[float],
               supernet: "Supernet | None", op_rows: list[int], batch: tuple, accel: "Accel | None",
               replicas: "Replicas | None") -> dict[str, Any]:
        """One controller step's update of α from the scored samples; returns its statistics for the log.
        ``batch`` is the validation batch the rewards were scored on (``(None, None)`` without a supernet)."""
        return controller.update(samples, torch.tensor(rewards))

    def diverged(self, stats: dict[str, Any]) -> str | None:
        """What went non-finite in this update's own numbers (the loop adds where and what is kept), or None."""
        return None

    def picks(self, controller: "OffPolicyController", samples: "Samples") -> torch.Tensor:
        """The per-decision choice the Matthew measure tracks after a controller step: the policy's argmax."""
        return controller.greedy()

    def picked_ops(self, controller: "OffPolicyController", derived: Callable[[], dict]) -> list[str]:
        """The op of every op decision as the policy ranks them now (``derived``: the stage's derivation, for a
        learner without a policy to take an argmax of)."""
        greedy = controller.greedy().tolist()
        return [d.options[a] for d, a in zip(controller.decisions, greedy) if d.kind == "op"]

    def choice_generator(self, stage: int, purpose: str) -> torch.Generator | None:
        """The generator a stage's shrinking (``purpose="shrink"``) or derivation (``"derive"``) draws from;
        None: they choose by π."""
        return None


class Reinforce(Learner):
    """The off-policy REINFORCE controller (``controller.OffPolicyController.update``): the default."""


class FirstOrderDarts(Learner):
    """First-order DARTS: α follows the gradient of the mixed supernet's validation loss (``darts_alpha_step``).
    The samples drawn at a controller step come from the target policy and only monitor; derivation ranks a
    node's inputs by edge strength, as DARTS does (its input-pair decisions never learn)."""

    name = "darts"
    sample_policy = "target"
    inputs = "edge_strength"
    learns_from_rewards = False

    def update(self, controller: "OffPolicyController", samples: "Samples", rewards: list[float],
               supernet: "Supernet | None", op_rows: list[int], batch: tuple, accel: "Accel | None",
               replicas: "Replicas | None") -> dict[str, Any]:
        x, y = batch
        return darts_alpha_step(controller, supernet, op_rows, x, y, accel, replicas)

    def diverged(self, stats: dict[str, Any]) -> str | None:
        loss = stats["darts/valid_loss"]
        return None if math.isfinite(loss) else f"the DARTS validation loss is {loss}"


class RandomSearch(Learner):
    """No learning (RandomNAS): weight steps and reward samples are uniform draws, the rewards only feed the
    best-sampled record, and shrinking and derivation are uniformly random, yet reproducible: a fresh generator
    per (seed, stage, purpose), the same on every call and after a resume."""

    name = "random"
    path_policy = "uniform"
    sample_policy = "uniform"

    def update(self, controller: "OffPolicyController", samples: "Samples", rewards: list[float],
               supernet: "Supernet | None", op_rows: list[int], batch: tuple, accel: "Accel | None",
               replicas: "Replicas | None") -> dict[str, Any]:
        return {}

    def picks(self, controller: "OffPolicyController", samples: "Samples") -> torch.Tensor:
        # no policy to take an argmax of: the pick is a fresh uniform draw, so the Matthew measure "argmax never
        # changed" reads the chance level
        return samples.actions[0]

    def picked_ops(self, controller: "OffPolicyController", derived: Callable[[], dict]) -> list[str]:
        picked = derived()  # no policy: the ops it picks are its random derivation's
        return [picked[d.label] for d in controller.decisions if d.kind == "op"]

    def choice_generator(self, stage: int, purpose: str) -> torch.Generator | None:
        return torch.Generator().manual_seed(self.settings.seed * 1_000_003 + stage * 10 +
                                             {"derive": 1, "shrink": 2}[purpose])


fill(LEARNERS, [Reinforce, FirstOrderDarts, RandomSearch])  # LEARNERS: name -> class, kept in search.registry


def make_learner(settings: "SearchSettings") -> Learner:
    """The learner ``settings.controller`` names (``SearchSettings.validate`` has refused unknown names)."""
    return LEARNERS[settings.controller](settings)


def darts_alpha_step(controller: "OffPolicyController", supernet: "Supernet", op_rows: list[int], x: torch.Tensor,
                     y: torch.Tensor, accel: "Accel | None" = None, replicas: "Replicas | None" = None
                     ) -> dict[str, float]:
    """One first-order DARTS step (``FirstOrderDarts``): Adam (the controller's optimizer) on the op
    alphas with the gradient of the validation-batch cross-entropy of the MIXED supernet, softmax(alpha) NOT
    detached. The weights stay frozen: only alpha is differentiated, so no weight gradient is even computed.
    Input-pair alphas get no gradient (DARTS has none; its derivation ranks edges by strength instead)."""
    pi = controller.log_pi().exp().to(x.device)  # differentiable in alpha
    supernet.set_mixed({controller.decisions[row].label: pi[row, : len(controller.decisions[row].options)]
                        for row in op_rows})
    loss = F.cross_entropy(accel.forward(supernet, x) if accel else supernet(x), y)
    (grad,) = torch.autograd.grad(loss, [controller.alpha])
    if replicas is not None:  # each replica saw a slice of the batch: the mean of their gradients is the batch's
        grad = replicas.average(grad.contiguous())
        loss = replicas.average(loss.detach().clone())
    controller.optimizer.zero_grad(set_to_none=True)
    controller.alpha.grad = grad
    controller.optimizer.step()
    controller.updates += 1
    return {"darts/valid_loss": float(loss.detach()), "darts/alpha_grad_norm": float(grad.norm()),
            "controller/entropy": float(controller.entropy().detach())}
