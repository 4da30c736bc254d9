"""Shared by every test module."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# matplotlib (imported on the way to torch/nni) builds a font cache per $HOME: a private $HOME shares the real one
MPLCONFIGDIR = os.environ.get("MPLCONFIGDIR") or str(Path.home() / ".cache" / "matplotlib")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the tests' networks are tiny, and on a shared 2-core machine two threads spin against
    each other (tens of times slower); the kill/resume comparisons also need a subprocess and this process to do
    the same arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def private_home(tmp_path, monkeypatch) -> Path:
    """A private ``$HOME`` under tmp_path, so NNI's registry and logs (``~/nni-experiments``) never touch the
    real one; subprocesses inherit it, and matplotlib keeps the real font cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", MPLCONFIGDIR)
    # nnictl's experiment registry (~/nni-experiments/.experiment) is a default argument bound when NNI was
    # imported, before this fixture ran: an in-process experiment would still register in the real $HOME
    registry = sys.modules.get("nni.tools.nnictl.config_utils")
    if registry is not None:
        monkeypatch.setattr(registry.Experiments.__init__, "__defaults__", (str(home / "nni-experiments"),))
    return home
