"""Rewards: accuracy through the shared weights times non-differentiable metrics of the architecture.

R = acc * prod_m (metric_m(a) / target_m) ^ w_m   (MnasNet form; w < 0 penalises a metric above its target;
w > 0 rewards one, as for a zero-cost score), minus ``size_abs_penalty * |params / size_target - 1|`` (TuNAS'
absolute form, which costs a cell below its size target too), and R = 0 for a cell above the hard ``size_budget``: a soft term
trades accuracy for size, so a user who must fit a device would still get a cell over the limit.
Metrics are functions of the architecture priced as the network it would become at evaluation size; adding one
is one entry in ``METRICS`` or a ``module:function`` named in the settings.
"""
from __future__ import annotations

import functools
import importlib
import numbers
import os
import sys
import types
from typing import Any, Callable

import torch

from search_spaces.families import EdgeOpLists, Family, as_family
from search_spaces.presets import initial_edge_ops

from nni_offpolicy.errors import UserError
from nni_offpolicy.profiling import EvalCostModel
from nni_offpolicy.settings import SearchSettings
from nni_offpolicy.search.zero_cost import ZeroCostScorer

MetricFn = Callable[[str, Any], float]


def _import_metric_module(module_name: str) -> Any:
    """Import as ``python -m`` would, from the working directory too: a console script puts its own folder, not
    the working directory, on ``sys.path``, so ``--set metric=mymodule:latency`` beside the user's files failed
    without PYTHONPATH. The working directory goes last, so it never shadows an installed module."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != module_name.split(".")[0] or here in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


# The standard library's modules that work on files, processes or code. A metric is called with (family,
# architecture) before anything else runs, so ``shutil:rmtree`` named in a settings file removed ./darts/ (the
# family's name). A settings file stays as powerful as code (its own module may do anything), but a callable of
# these modules is never a metric: refused by the module named, before it is imported, and by the callable's own
# module once loaded (a user module that hands one on, ``from shutil import rmtree as latency``).
REFUSED_METRIC_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "genericpath", "shutil", "pathlib", "subprocess",
    "posixsubprocess", "tempfile", "glob", "io", "fileinput", "filecmp", "zipfile", "tarfile", "gzip", "bz2", "lzma",
    "shelve", "dbm", "sqlite3", "pickle", "marshal", "builtins", "importlib", "runpy", "pty", "socket", "ctypes",
    "multiprocessing", "signal", "sys", "code", "codeop", "compileall", "py_compile", "zipimport", "mmap", "fcntl",
    "resource", "webbrowser", "pdb", "atexit"})


def _owners(fn: Any) -> list[Any]:
    """The module names ``fn`` belongs to: its own, and its ``__self__``'s (a built-in function's module, or the
    class of the object a bound method is bound to)."""
    owners = [getattr(fn, "__module__", None)]
    if hasattr(fn, "__self__"):
        bound = fn.__self__
        owners.append(bound.__name__ if isinstance(bound, types.ModuleType) else type(bound).__module__)
    return owners


def _refused_module(fn: Any) -> str | None:
    """The refused module ``fn`` comes from (through ``functools.partial`` and bound methods too), or None."""
    for _ in range(8):
        if fn is None:
            break
        for owner in _owners(fn):
            top = owner.split(".")[0].lstrip("_") if isinstance(owner, str) else ""
            if top in REFUSED_METRIC_MODULES:
                return top
        fn = fn.func if isinstance(fn, functools.partial) else None
    return None


def _refuse(spec: str, module: str) -> UserError:
    return UserError(f"metric {spec!r} is refused: it comes from the standard library's {module} module, which works "
                     f"on files, processes or code; a metric must be a function of (family, architecture) of your "
                     f"own module")


def load_metric(spec: str) -> MetricFn:
    """``module:function`` -> a callable ``(family, architecture) -> float`` (e.g. a measured latency). Callables of
    the standard library's file-system, process and code modules are refused (``REFUSED_METRIC_MODULES``)."""
    module_name, _, attr = spec.partition(":")
    top = module_name.strip().split(".")[0].lstrip("_")
    if top in REFUSED_METRIC_MODULES:
        raise _refuse(spec, top)
    try:
        fn = getattr(_import_metric_module(module_name), attr)
    except Exception as exc:  # importing runs the module: a SyntaxError or its own failure is one line too
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"metric {spec!r} cannot be loaded: {first[:200]}") from None
    if not callable(fn):
        raise UserError(f"metric {spec!r} is not callable")
    refused = _refused_module(fn)
    if refused is not None:
        raise _refuse(spec, refused)
    return fn


def probe_metric(spec: str, family: str, arch: Any) -> float:
    """Load ``spec`` and call it once on ``arch`` (a known architecture of the search's space) before any
    training: a metric that raises or returns something other than a real number stops here, in one line naming
    it, instead of after the warm-up epochs. (A non-finite value is a number: the search's own reward check
    stops on it, keeping the last checkpoint.)"""
    fn = load_metric(spec)
    try:
        value = fn(family, arch)
    except Exception as exc:  # the user's code: any exception is its failure, reported as one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"metric {spec!r} failed on a {family} architecture: {type(exc).__name__}: {first}"
                        ) from None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"metric {spec!r} must return a real number for (family, architecture), got "
                        f"{type(value).__name__} {value!r:.60}")
    return float(value)


def zero_cost_probe_size(settings: SearchSettings) -> int:
    """How many of the first reward batch's images a zero-cost score looks at."""
    return settings.zero_cost_images or min(64, settings.reward_batch)


class RewardModel:
    def __init__(self, settings: SearchSettings, family: Family | str, num_classes: int, in_channels: int, input_size: int,
                 custom_metric: MetricFn | None = None, probe_images: torch.Tensor | None = None,
                 probe_labels: torch.Tensor | None = None, reference_ops: EdgeOpLists | None = None):
        """``probe_images`` and ``probe_labels``: the batch a zero-cost score looks at (the images are needed when
        ``settings.zero_cost`` is set, the labels by the scores that take a loss). ``reference_ops``: the space an
        ensemble's reference cells are drawn from (default the settings' space, whole)."""
        self.settings = settings
        self.family = as_family(family)
        self.cost = EvalCostModel(family, layers=settings.eval_layers, channels=settings.eval_channels,
                                  num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        self.custom = custom_metric or (load_metric(settings.metric) if settings.metric else None)
        self._custom_cache: dict[str, float] = {}
        self.zero_cost = self.eval_zero_cost = None
        if settings.zero_cost is not None:
            if probe_images is None:
                raise ValueError("zero_cost needs probe_images")
            size = zero_cost_probe_size(settings)
            probe = dict(images=probe_images[:size], labels=None if probe_labels is None else probe_labels[:size],
                         score=settings.zero_cost, nodes=settings.nodes,
                         reference_ops=reference_ops or initial_edge_ops(settings.space, settings.nodes))
            self.zero_cost = ZeroCostScorer(family, layers=settings.zero_cost_layers or settings.layers[0],
                                            channels=settings.zero_cost_channels, num_classes=num_classes, **probe)
            # the final pick's scorer: the same score and images on the network the cell becomes, which a
            # reward scored thousands of times cannot afford and a pick over at most a space's cells can
            # (``pick_zero_cost``, if set, in place of the reward's score)
            self.eval_zero_cost = ZeroCostScorer(family, layers=settings.eval_layers, channels=settings.eval_channels,
                                                 num_classes=num_classes,
                                                 **{**probe, "score": settings.pick_zero_cost or settings.zero_cost})

    def price(self, arch: Any) -> tuple[int, int]:
        # Pricing builds modules lazily and module init draws from the global RNG; fork it so that how much
        # was cached (which a resumed process does not have) never changes the training's random stream.
        with torch.random.fork_rng(devices=[]):
            return self.cost.cost(arch)

    def metrics(self, arch: Any, key: str) -> dict[str, float]:
        params, flops = self.price(arch)
        out = {"params_m": params / 1e6, "flops_m": flops / 1e6}
        if self.custom is not None:
            if key not in self._custom_cache:
                self._custom_cache[key] = float(self.custom(self.family.name, arch))
            out["metric"] = self._custom_cache[key]
        if self.zero_cost is not None:
            out["zero_cost"] = self.zero_cost(arch, key)
        return out

    def reward(self, accuracy: float, metrics: dict[str, float], stage: int) -> float:
        s = self.settings
        if s.size_budget is not None and stage + 1 >= s.size_budget_from_stage and metrics["params_m"] > s.size_budget:
            return 0.0  # a hard budget: no accuracy buys a cell above it
        r = accuracy
        terms = [("params_m", s.size_target, s.size_exponent), ("flops_m", s.flops_target, s.flops_exponent),
                 ("metric", s.metric_target, s.metric_exponent),
                 ("zero_cost", s.zero_cost_target, s.zero_cost_exponent)]
        for name, target, exponent in terms:
            if exponent[stage] != 0 and name in metrics:
                r *= (max(metrics[name], 1e-12) / target[stage]) ** exponent[stage]
        if s.size_abs_penalty[stage]:
            r -= s.size_abs_penalty[stage] * abs(metrics["params_m"] / s.size_target[stage] - 1.0)
        return r
