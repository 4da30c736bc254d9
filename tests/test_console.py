"""What a user sees while commands run: --help without importing torch or NNI, progress bars only on a terminal,
plain epoch lines in a log, --quiet's one line per stage, NNI's known-harmless warnings filtered (and nothing else),
TensorBoard's tags in a useful order. (How fast --help is: scripts/help_latency.py, a benchmark, not a test.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from nni_offpolicy.cli import COMMANDS, main

from fixtures import TINY, set_flags

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "nni", "pytorch_lightning", "lightning", "matplotlib", "tensorboard")


def test_building_the_parser_imports_neither_torch_nor_nni():
    """Breakage caught (issue 27): ``nni-offpolicy --help`` and the sub-commands' took 6-8 s because cli.py and
    commands/* imported torch and NNI (through settings, search_spaces, retrain) before argparse ran."""
    code = ("import sys, json\n"
            "from nni_offpolicy.cli import COMMANDS, build_parser\n"
            "build_parser()\n"
            "for name in COMMANDS:\n"
            "    build_parser(name)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_plots_light_copy_of_the_formats_is_tools_plots():
    from nni_offpolicy.commands.plot import FORMATS
    from nni_offpolicy.tools.plot import FORMATS as DRAWN

    assert set(FORMATS) == set(DRAWN)


@pytest.mark.parametrize("argv", [[], *([name] for name in COMMANDS), ["trial", "search"]])
def test_every_help_prints_and_exits_0(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    assert "usage: nni-offpolicy" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- progress bars and lines
TINY_RUN = {**TINY, "epochs": "2,1,1", "warmup_epochs": "1,0,0", "max_steps_per_epoch": 2, "eval_images": 64,
            "progress": True}


def test_a_redirected_search_prints_epoch_lines_and_no_bars(tmp_path, capsys):
    """Breakage caught (issue 27): redirected to a file, the bars' redraws filled 395 lines for 24 epoch lines.
    capsys's stderr is no terminal, as a log file is not."""
    assert main(["search", "-o", str(tmp_path / "run"), *set_flags(TINY_RUN)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err, err
    epoch_lines = [line for line in err.splitlines() if line.startswith("stage ") and " epoch " in line]
    assert len(epoch_lines) == 4, err  # 2 + 1 + 1 epochs


def test_quiet_keeps_one_line_per_stage(tmp_path, capsys):
    """Breakage caught (issue 27): --quiet hid the epoch lines and everything else, so a long search printed
    nothing until its end."""
    assert main(["search", "--quiet", "-o", str(tmp_path / "run"), *set_flags(TINY_RUN)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in err] == ["stage 1/3", "stage 2/3", "stage 3/3"], err
    assert all("s so far" in line and "valid acc" in line for line in err), err
