"""The learners' interface: one registry is the list of controllers the settings accept, a new learner needs
only a class and an entry, and no module outside learners.py branches on ``settings.controller``."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from nni_offpolicy import learners
from nni_offpolicy.errors import UserError
from nni_offpolicy.learners import LEARNERS, Learner, RandomSearch, make_learner
from nni_offpolicy.settings import load_settings

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
