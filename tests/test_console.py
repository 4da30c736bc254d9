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


# ------------------------------------------------------------------------------------- known-harmless messages
def _python(code: str, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_nnis_import_warnings_are_filtered_by_name_and_nothing_else():
    """Breakage caught (issue 27): importing NNI's NAS API through this package printed torch's Buffer and
    LinearCrossEntropyOptions "not a nn.Module ... your PyTorch version might not be supported" warnings. The
    filter names those two classes only: the same warning about another class still shows."""
    bare = _python("import nni.nas.nn.pytorch", "-W", "default")
    assert "Buffer'> is found to be not a nn.Module" in bare.stderr  # what the filter is for: NNI still says it
    ours = _python("import nni_offpolicy, warnings\n"
                   "import nni.nas.nn.pytorch\n"
                   "from nni.nas.experiment import NasExperiment\n"
                   "warnings.warn(\"<class 'torch.nn.Other'> is found to be not a nn.Module\", RuntimeWarning)\n",
                   "-W", "default")
    assert ours.returncode == 0, ours.stderr
    assert "Buffer" not in ours.stderr and "LinearCrossEntropyOptions" not in ours.stderr, ours.stderr
    assert "torch.nn.Other'> is found to be not a nn.Module" in ours.stderr


def test_the_sequential_engines_training_service_line_is_dropped_and_others_kept(caplog):
    """NNI logs "`training_service` will be ignored for sequential execution engine" 17 times a search; the filter
    drops that line on that logger (the text is NNI's own, checked in its source) and keeps the logger's others."""
    import inspect
    import logging

    import nni.nas.experiment.config.experiment as config

    from nni_offpolicy.nni_glue.harmless import HARMLESS_LOG_LINES, install

    (name, (line,)), = HARMLESS_LOG_LINES.items()
    assert name == config._logger.name and line in inspect.getsource(config)
    install()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    config._logger.addHandler(handler)
    try:
        config._logger.warning("`training_service` will be ignored for sequential execution engine.")
        config._logger.warning("something else")
    finally:
        config._logger.removeHandler(handler)
    assert seen == ["something else"]


NNICTL = Path(sys.executable).parent / "nnictl"


@pytest.mark.skipif(not NNICTL.exists(), reason="nnictl is not installed next to this Python")
def test_nnictl_env_silences_its_pkg_resources_warning_only():
    from nni_offpolicy.nni_glue.harmless import nnictl_env

    plain = subprocess.run([str(NNICTL), "--version"], capture_output=True, text=True, timeout=120)
    assert "pkg_resources is deprecated" in plain.stderr  # the warning the environment is for
    quiet = subprocess.run([str(NNICTL), "--version"], capture_output=True, text=True, timeout=120,
                           env=nnictl_env(dict(os.environ)))
    assert quiet.returncode == 0 and quiet.stderr.strip() == "" and quiet.stdout.strip() == "3.0"
    assert nnictl_env({"PYTHONWARNINGS": "error::FutureWarning"})["PYTHONWARNINGS"].startswith("error::FutureWarning,")


def test_pytest_ini_repeats_the_warning_filters(tmp_path):
    """pytest resets warning filters around every test, so pytest.ini carries the same ones; without them a
    test that traces a TensorDataset ends with a warnings summary printing whole tensors (issue 27: 316 lines)."""
    from nni_offpolicy.nni_glue.harmless import HARMLESS_WARNINGS

    ini = (ROOT / "pytest.ini").read_text()
    for w in HARMLESS_WARNINGS:
        assert f"ignore:{w.message}:{w.category.__name__}" in ini, w.message
    test = tmp_path / "test_traced.py"
    test.write_text("import nni, torch\nfrom torch.utils.data import TensorDataset\n\n"
                    "def test_trace():\n    nni.trace(TensorDataset)(torch.zeros(64, 3, 8, 8), torch.zeros(64))\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pytest.ini"), "-o", "addopts=",
                           "--rootdir", str(tmp_path), "-p", "no:cacheprovider", str(test)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warnings summary" not in done.stdout and "tensor(" not in done.stdout, done.stdout


def test_ablate_says_which_run_starts_and_how_long_the_grid_has_run(tmp_path, capsys):
    """Breakage caught (issue 27): without --verbose a grid printed nothing until a search finished (hours on
    the real presets): now a line as each search starts, then its result line."""
    from fixtures import TINY_TWO_STAGES

    assert main(["ablate", "--seeds", "0,1", "--variants", "random", "--output", str(tmp_path / "grid"),
                 *set_flags(TINY_TWO_STAGES)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines[:4]] == ["[1/2] random seed 0"] * 2 + ["[2/2] random seed 1"] * 2
    assert "starting" in lines[0] and "s into the grid" in lines[2] and "derived valid acc" in lines[1], lines
