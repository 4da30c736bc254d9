"""Turn an NNI model space into a weight-sharing supernet, in place, with two ways to run it.

Every ``LayerChoice`` becomes a ``SuperEdge`` (same candidate modules, same label) and every ``InputChoice`` a
``SuperInput``. Modules with one label are one decision: setting the label's choice sets it in every cell.
- mixed: an edge outputs sum_k w_k op_k(x) with w = softmax(alpha) detached (DARTS' weighted sum, as in the lab
  log); a node sums all incoming edges.
- path: an edge runs only its active op and a node only its two active inputs; nothing else runs (SPOS/ENAS).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from nni.nas.nn.pytorch import InputChoice, LayerChoice
from torch import nn


class SuperEdge(nn.Module):
    def __init__(self, label: str, candidates: Mapping[str, nn.Module]):
        super().__init__()
        self.label = label
        self.names = list(candidates)
        self.ops = nn.ModuleDict(candidates)
        self.mode = "path"
        self.active: str = self.names[0]
        self.weights: torch.Tensor | None = None  # [len(names)] for mixed mode
        self.skip_dropout = 0.0

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        out = self.ops[name](x)
        if name == "skip_connect" and self.skip_dropout > 0 and self.training:
            out = F.dropout(out, p=self.skip_dropout)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "path":
            return self._run(self.active, x)
        out = None
        for k, name in enumerate(self.names):
            w = self.weights[k]
            term = self._run(name, x) * w
            out = term if out is None else out + term
        return out


class SuperInput(nn.Module):
    """Which inputs a node sums: ``chosen`` is a pair (path) or None (mixed: all of them)."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label
        self.chosen: list[int] | None = None

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        picked = inputs if self.chosen is None else [inputs[i] for i in self.chosen]
        return sum(picked[1:], picked[0])


class Supernet(nn.Module):
    """The mutated space plus an index from labels to the modules that implement each decision."""

    def __init__(self, space: nn.Module):
        super().__init__()
        self.edges: dict[str, list[SuperEdge]] = {}
        self.inputs: dict[str, list[SuperInput]] = {}
        replacements = []
        for parent_name, parent in space.named_modules():
            for child_name, child in parent.named_children():
                if isinstance(child, LayerChoice):
                    replacements.append((parent, child_name, SuperEdge(child.label, {str(n): child[n] for n in child.names})))
                elif isinstance(child, InputChoice):
                    replacements.append((parent, child_name, SuperInput(child.label)))
        for parent, name, new in replacements:
            parent._modules[name] = new
            index = self.edges if isinstance(new, SuperEdge) else self.inputs
            index.setdefault(new.label, []).append(new)
        self.space = space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.space(x)

    def set_mixed(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Weights per op label (in each edge's candidate order); inputs: all."""
        for label, modules in self.edges.items():
            for edge in modules:
                edge.mode = "mixed"
                edge.weights = weights[label]
        for modules in self.inputs.values():
            for selector in modules:
                selector.chosen = None

    def set_path(self, sample: Mapping[str, Any]) -> None:
        """One architecture: ``{op label: op name, input label: [i, j]}``."""
        for label, modules in self.edges.items():
            for edge in modules:
                edge.mode = "path"
                edge.active = sample[label]
        for label, modules in self.inputs.items():
            for selector in modules:
                selector.chosen = list(sample[label])

    def set_skip_dropout(self, p: float) -> None:
        for modules in self.edges.values():
            for edge in modules:
                edge.skip_dropout = p

    def candidate_ops(self) -> list[nn.Module]:
        """Every candidate op module of every edge: the units compiled one by one (``accel.Accel.prepare``)."""
        return [op for modules in self.edges.values() for edge in modules for op in edge.ops.values()]
