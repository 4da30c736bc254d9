"""Hostile input and faults (issue #13): nothing of an earlier run is lost, no one's code runs from a checkpoint,
and every bad input is one line on stderr with exit code 2, before anything is written or removed.

Kept fast: one tiny finished search shared by the module (copied per test), every other run diverges or is
refused within its first steps.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nni_offpolicy.cli import main

REPO = Path(__file__).resolve().parents[1]
# The tiny search of the issue: 3 stages of one 2-step epoch, a controller update every step.
TINY = ["--preset", "demo", "--epochs", "1,1,1", "--warmup-epochs", "0", "--layers", "3,3,3", "--batch-size", "16",
        "--set", "max_steps_per_epoch=2", "--set", "rl_interval_steps=1", "--set", "samples_per_update=2",
        "--set", "eval_layers=5", "--set", "eval_channels=8", "--set", "channels=4", "--quiet"]
RETRAIN_TINY = ["--dataset", "digits", "--layers", "3", "--channels", "4", "--batch-size", "64", "--cutout", "0",
                "--max-steps", "2", "--epochs", "1", "--device", "cpu", "--no-progress"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (lock file aside) with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".nni-offpolicy.lock"}


def one_line_error(capsys, code: int, *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "w"
    assert main(["search", *TINY, "-o", str(out)]) == 0
    assert (out / "genotype.json").exists() and (out / "checkpoint.pt").exists()
    return out


@pytest.fixture()
def previous_run(finished_search, tmp_path) -> Path:
    """A private copy of the finished search, so a test may try to damage it."""
    out = tmp_path / "w"
    shutil.copytree(finished_search, out)
    return out


# ------------------------------------------------------------------------------------------- 1. nothing is lost
@pytest.mark.parametrize("flags,expected", [
    ([], "--overwrite"),                                                 # forgot --resume
    (["--overwrite", "--batch-size", "5000"], "batch_size 5000"),       # checks after the old deletions
    (["--overwrite", "--seed", "1e20"], "seed must be a whole number"),
    (["--overwrite", "--set", "metric=nosuch:f"], "metric 'nosuch:f'"),
    (["--resume", "--overwrite"], "give one of them"),
])
def test_bad_rerun_leaves_the_finished_search_untouched(previous_run, capsys, flags, expected):
    before = snapshot(previous_run)
    code = main(["search", *TINY, "-o", str(previous_run), *flags])
    one_line_error(capsys, code, expected)
    assert snapshot(previous_run) == before


def test_forgetting_resume_says_how_to_continue_or_discard(previous_run, capsys):
    (previous_run / "genotype.json").unlink()  # a killed run: only its checkpoint
    code = main(["search", *TINY, "-o", str(previous_run)])
    one_line_error(capsys, code, "resumable search", "--resume", "--overwrite")
    assert (previous_run / "checkpoint.pt").exists()


def test_overwrite_replaces_the_run_and_removes_stale_temporary_files(previous_run, capsys):
    stale = previous_run / ".checkpoint.pt.tmp99999999"  # what a writer killed mid-save leaves
    stale.write_bytes(b"half a checkpoint")
    old = (previous_run / "metrics.jsonl").read_text()
    assert main(["search", *TINY, "-o", str(previous_run), "--overwrite", "--seed", "1"]) == 0
    assert not stale.exists()
    new = (previous_run / "metrics.jsonl").read_text().splitlines()
    assert len(new) == 3 and new != old.splitlines()  # one line per epoch of this run, none of the old one
    assert not list(previous_run.glob(".*.tmp*"))


@pytest.fixture(scope="module")
def finished_retrain(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("retrain") / "r"
    assert main(["retrain", "--genotype", "darts_v2", *RETRAIN_TINY, "-o", str(out)]) == 0
    assert (out / "result.json").exists()
    return out


@pytest.mark.parametrize("flags,expected", [
    ([], "finished retrain"),
    (["--overwrite", "--genotype", "nosuch"], "nosuch"),
    (["--overwrite", "--batch-size", "100000"], "batch size 100000"),
])
def test_bad_retrain_rerun_leaves_the_finished_retrain_untouched(finished_retrain, tmp_path, capsys, flags,
                                                                 expected):
    out = tmp_path / "r"
    shutil.copytree(finished_retrain, out)
    before = snapshot(out)
    args = ["retrain", "--genotype", "darts_v2", *RETRAIN_TINY, "-o", str(out), *flags]
    one_line_error(capsys, main(args), expected)
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------- 2. one lock per folder
HOLDER = """
import sys, time
from nni_offpolicy.files.locking import output_lock
with output_lock(sys.argv[1], "search"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def held_folder(tmp_path):
    """A folder whose lock another real process holds; killed with SIGKILL (no clean-up) afterwards."""
    folder = tmp_path / "busy"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield folder
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("argv", [
    ["search", *TINY],
    ["retrain", "--genotype", "darts_v2", *RETRAIN_TINY],
    ["ablate", "--preset", "demo", "--seeds", "0", "--variants", "offpolicy-uniform"],
    ["bench", "--preset", "demo", "--steps", "4", "--device", "cpu", "--weight-modes", "path"],
])
def test_second_run_into_a_locked_folder_refuses_at_once(held_folder, capsys, argv):
    started = time.perf_counter()
    code = main([*argv, "-o", str(held_folder)])
    one_line_error(capsys, code, "in use by another", "pid")
    assert time.perf_counter() - started < 10  # refused before any data or training
    assert sorted(p.name for p in held_folder.iterdir()) == [".nni-offpolicy.lock"]


def test_lock_of_a_killed_process_is_free_again(held_folder):
    from nni_offpolicy.errors import UserError
    from nni_offpolicy.files.locking import output_lock

    with pytest.raises(UserError, match="in use"):
        with output_lock(held_folder):
            pass
    os.kill(int((held_folder / ".nni-offpolicy.lock").read_text()), 9)  # kill -9: no clean-up of its own runs
    deadline = time.time() + 10
    while True:
        try:
            with output_lock(held_folder):
                break
        except UserError:
            assert time.time() < deadline, "the lock outlived its process"
            time.sleep(0.05)


# ------------------------------------------------------------------------------ 3. checkpoints run no one's code
class _Payload:
    """Unpickling this calls ``Path.write_text(marker, ...)``: what a planted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the payload ran"))


@pytest.mark.parametrize("command", ["search", "retrain"])
def test_planted_checkpoint_is_refused_and_its_payload_never_runs(previous_run, tmp_path, capsys, command):
    marker = tmp_path / "payload-ran"
    folder = previous_run if command == "search" else tmp_path / "r"  # a retrain never writes into a search's
    folder.mkdir(exist_ok=True)
    torch.save({"settings": {}, "format": "nni-offpolicy/retrain/1", "x": _Payload(marker)},
               folder / "checkpoint.pt")
    argv = (["search", *TINY] if command == "search" else ["retrain", "--genotype", "darts_v2", *RETRAIN_TINY])
    code = main([*argv, "-o", str(folder), "--resume"])
    assert not marker.exists(), "loading the checkpoint executed its payload"
    one_line_error(capsys, code, "checkpoint", "cannot be read")


@pytest.mark.parametrize("content", ["empty", "truncated", "text", "foreign"])
def test_damaged_checkpoint_on_resume_is_one_line(previous_run, capsys, content):
    path = previous_run / "checkpoint.pt"
    data = path.read_bytes()
    if content == "foreign":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "text": b"not a checkpoint\n"}[content])
    code = main(["search", *TINY, "-o", str(previous_run), "--resume"])
    one_line_error(capsys, code, "checkpoint")


def test_checkpoint_holds_only_tensors_and_plain_values(finished_search):
    state = torch.load(finished_search / "checkpoint.pt", weights_only=True)  # raises on anything else
    assert {"rng", "settings", "stage_state"} <= set(state)


# ---------------------------------------------------------------------------------- 4. pasted Genotype(...) text
def test_pasted_genotype_string_profiles_plots_and_names_a_retrain(tmp_path, capsys):
    from nni_offpolicy.commands.retrain import default_output_dir
    from search_spaces.families import load_architecture
    from search_spaces.genotypes import PUBLISHED

    text = str(PUBLISHED["pdarts"])
    assert len(text) > 255  # longer than a file name may be
    assert load_architecture(text) == ("darts", PUBLISHED["pdarts"])
    assert main(["profile", text, "--layers", "3", "--channels", "4", "--json"]) == 0
    assert main(["plot", text, "-o", str(tmp_path / "cell.png")]) == 0
    assert (tmp_path / "cell.png").stat().st_size > 0
    assert default_output_dir(text, None).name.startswith("retrain-arch-")
    capsys.readouterr()


# --------------------------------------------------------------------------------- 5. non-finite, out of range
@pytest.mark.parametrize("flags,expected", [
    (["--controller-lr", "inf"], "controller_lr must be a finite number"),
    (["--set", "entropy_weight=nan"], "entropy_weight must be a finite number"),
    (["--temperature", "1e-300"], "temperature must be in"),
    (["--set", "max_steps_per_epoch=-1"], "max_steps_per_epoch must be >= 1"),
    (["--set", "momentum=nan"], "momentum must be a finite number"),
    (["--set", "momentum=1.5"], "momentum must be in [0, 1)"),
    (["--set", "weight_decay=nan"], "weight_decay must be a finite number"),
    (["--set", "lr=inf"], "lr must be a finite number"),
    (["--seed", "1e20"], "seed must be a whole number in [0, 4294967295]"),
    (["--set", "split_seed=-1"], "split_seed must be a whole number"),
    (["--set", "nodes=0"], "nodes must be in 1..8"),
])
def test_invalid_numbers_are_one_line_before_anything_is_written(tmp_path, capsys, flags, expected):
    out = tmp_path / "out"
    one_line_error(capsys, main(["search", *TINY, "-o", str(out), *flags]), expected)
    assert not out.exists()


@pytest.mark.parametrize("field,value", [("auxiliary_weight", float("inf")), ("weight_decay", float("inf")),
                                         ("seed", 2**70)])
def test_invalid_retrain_numbers_are_user_errors(field, value):
    from nni_offpolicy.errors import UserError
    from nni_offpolicy.retrain import RetrainSettings

    with pytest.raises(UserError, match=field):
        RetrainSettings(genotype="darts_v2", **{field: value}).validate()


def test_alpha_going_non_finite_stops_and_says_no_checkpoint_exists_yet(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["search", *TINY, "-o", str(out), "--controller-lr", "1e308"])
    err = one_line_error(capsys, code, "alpha is not finite", "no checkpoint")
    assert "is intact" not in err and not (out / "checkpoint.pt").exists()


def test_early_nan_loss_does_not_claim_an_intact_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    err = one_line_error(capsys, main(["search", *TINY, "-o", str(out), "--set", "lr=1e30"]), "stage 1, epoch 1")
    assert "is intact" not in err and "no checkpoint" in err


# ------------------------------------------------------------------------------------------------- 6. metric
@pytest.mark.parametrize("body,expected", [
    ("    return 'fast'\n", "must return a real number"),
    ("    raise RuntimeError('no device to time on')\n", "RuntimeError: no device to time on"),
    ("    return None\n", "must return a real number"),
])
def test_bad_metric_is_one_line_naming_it_before_training(tmp_path, monkeypatch, capsys, body, expected):
    module = "metric_" + hashlib.sha1(body.encode()).hexdigest()[:8]  # one module per case: imports are cached
    (tmp_path / f"{module}.py").write_text("def latency(family, arch):\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    code = main(["search", *TINY, "-o", str(out), "--set", f"metric={module}:latency"])
    one_line_error(capsys, code, f"metric '{module}:latency'", expected)
    assert not out.exists()


# ------------------------------------------------------------------------------------------ 7. unwritable output
@pytest.mark.parametrize("argv", [
    ["search", *TINY, "-o", "{file}"],
    ["search", *TINY, "-o", "{file}/below"],
    ["retrain", "--genotype", "darts_v2", *RETRAIN_TINY, "-o", "{file}"],
    ["export", "--experiment", "nosuch", "-o", "{file}/top.json"],
    ["bench", "--preset", "demo", "--steps", "4", "--device", "cpu", "--weight-modes", "path", "--layers", "3,3,3",
     "-o", "{dir}/b", "--json", "{file}/b.json"],
])
def test_output_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, argv):
    file = tmp_path / "a-file"
    file.write_text("keep me\n")
    argv = [a.format(file=file, dir=tmp_path) for a in argv]
    one_line_error(capsys, main(argv), str(file))
    assert file.read_text() == "keep me\n"
    assert not (tmp_path / "b").exists()


# -------------------------------------------------------------------------------------------- 8. config files
@pytest.mark.parametrize("name,content,expected", [
    ("folder.yml", None, "is a folder"),
    ("list.yml", "preset: [demo]\n", "is not one preset name"),
    ("binary.json", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not text"),
    ("unknown.yml", "preset: nb201\ncolour: blue\n", "unknown setting 'colour'"),  # a preset other than --preset's
])
def test_bad_config_file_is_one_line_naming_the_file(tmp_path, capsys, name, content, expected):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    out = tmp_path / "out"
    err = one_line_error(capsys, main(["search", "--config", str(path), "-o", str(out)]), str(path), expected)
    assert "overrides" not in err
    assert not out.exists()


# --------------------------------------------------------------------------------------- 9. one atomic writer
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from nni_offpolicy.files.atomic import atomic_write

    path = tmp_path / "genotype.json"
    path.write_text("old\n")

    def half_then_fail(handle):
        handle.write(b"new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genotype.json"]


def test_no_hand_written_temp_and_replace_outside_the_atomic_helper():
    hits = [str(p.relative_to(REPO)) for folder in ("nni_offpolicy", "search_spaces") for p in
            (REPO / folder).rglob("*.py") if "os.replace(" in p.read_text() and p.name != "atomic.py"]
    assert hits == []


def test_metric_module_in_the_working_directory_is_found_without_pythonpath(tmp_path):
    """Catches the README's metric example failing as written: a console script puts its own folder, not the
    working directory, on sys.path (``-P`` gives this interpreter the same sys.path), so ``mymodule`` beside the
    user's files was "No module named 'mymodule'"."""
    (tmp_path / "mymodule.py").write_text("def latency(family, architecture):\n    return 12.5\n")
    code = ("from nni_offpolicy.search.rewards import load_metric\n"
            "import sys; assert '' not in sys.path and '.' not in sys.path\n"
            "print(load_metric('mymodule:latency')('nb201', None))")
    done = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "12.5"
