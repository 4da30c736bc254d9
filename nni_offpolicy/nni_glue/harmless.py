"""NNI's and torch's known-harmless messages, filtered here and nowhere else.

Each filter names one exact message (never a category or a module wholesale) and says why it is harmless, so a
new warning of the same kind, or the same text about another class, still shows. ``install()`` runs when
``nni_offpolicy`` or ``search_spaces`` is imported, before either imports NNI: the first two warnings are raised
once, while ``nni.nas.nn.pytorch`` is first imported. A script that imports ``nni`` itself first sees them
(import ``nni_offpolicy`` before ``nni``). pytest resets warning filters around every test, so ``pytest.ini``
repeats the three warning filters with the same messages (tests/test_console.py checks the two agree).

nnictl is not ours to import: it is a separate process that imports ``pkg_resources`` (setuptools < 81, see
setup.py) and so prints setuptools' deprecation warning on every call. ``NNICTL_ENV`` is the environment that
silences exactly that one for a child nnictl (what the tests and scripts that launch nnictl pass it).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class HarmlessWarning:
    category: type[Warning]
    message: str  # a regular expression matched from the start of the message, as warnings.filterwarnings does
    module: str  # where NNI raises it (the warning's module, as warnings.filterwarnings matches it)
    why: str


HARMLESS_WARNINGS = (
    # nni/nas/nn/pytorch/layers.py wraps every class torch.nn exports as a mutable-aware layer when it is first
    # imported; torch 2.x exports two classes that are not modules. NNI warns and then aliases them unchanged
    # (``Buffer = nn.Buffer``), which is what they should be; no space of ours builds either through NNI.
    HarmlessWarning(RuntimeWarning, r"<class 'torch\.nn\.parameter\.Buffer'> is found to be not a nn\.Module",
                    "nni.nas.nn.pytorch.layers", "torch.nn.Buffer is a Tensor subclass, aliased unchanged"),
    HarmlessWarning(RuntimeWarning, r"<class 'torch\.nn\.modules\.linear_cross_entropy_options\."
                                    r"LinearCrossEntropyOptions'> is found to be not a nn\.Module",
                    "nni.nas.nn.pytorch.layers", "an options dataclass of torch.nn, aliased unchanged"),
    # nni.trace records a traced class's constructor arguments so an evaluator can be re-created in another
    # process, and asks for keyword arguments; TensorDataset(*tensors) takes none. Our evaluators (bench
    # --against nni's Classification) run in the sequential engine, in this process, so nothing is re-created.
    # The message holds the whole repr of the tensors (hundreds of lines in pytest's summary), hence (?s).
    HarmlessWarning(UserWarning, r"(?s)Found positional arguments .* should processing parameters of "
                                 r"<function TensorDataset\.__init__ at ",
                    "nni.common.serializer", "TensorDataset only takes positional tensors; not re-created"),
)

# nni/nas/experiment/config/experiment.py logs this each time a NasExperiment's config is canonicalised (17
# times for one search) when a one-shot strategy runs: the sequential engine runs the search in this process,
# so a training service has nothing to do, and NNI fills in the default local one itself.
HARMLESS_LOG_LINES = {"nni.nas.experiment.config.experiment":
                      ("`training_service` will be ignored for sequential execution engine",)}

# setuptools' warning when nnictl imports pkg_resources (nni/tools/nnictl/nnictl.py); nnictl needs it (setup.py
# pins setuptools < 81, which still has pkg_resources), so the warning is about a future we pinned away from.
NNICTL_WARNING = "ignore:pkg_resources is deprecated as an API:UserWarning"
NNICTL_ENV = {"PYTHONWARNINGS": NNICTL_WARNING}

_installed = False


class _DropLines(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def install() -> None:
    """The filters above, once per process (cheap: imports neither NNI nor torch)."""
    global _installed
    if _installed:
        return
    _installed = True
    for w in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=w.message, category=w.category, module=w.module)
    for name, starts in HARMLESS_LOG_LINES.items():
        logging.getLogger(name).addFilter(_DropLines(starts))


def nnictl_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` for a child nnictl, with its pkg_resources warning silenced (other PYTHONWARNINGS kept)."""
    given = environ.get("PYTHONWARNINGS")
    return {**environ, "PYTHONWARNINGS": f"{given},{NNICTL_WARNING}" if given else NNICTL_WARNING}
