"""Issue 29, items 1, 2 and the folder messages of 12: a run writes only into an empty folder, a folder of its own
kind (which it may resume or --overwrite), or its own new sub-names; anything else there is refused in one line
naming what is in the way, and --overwrite removes only what the product wrote. A metric from the standard
library's file-system modules is refused before it is called.

Kept fast: one tiny finished search and one tiny finished retrain shared by the module (copied per test); every
other run is refused before any data is loaded.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nni_offpolicy.cli import main

from test_hostile import RETRAIN_TINY, TINY, one_line_error, snapshot

MARKER = ".nni-offpolicy-run.json"


def everything(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (lock file aside), files with a hash: what the user would miss."""
    shown = snapshot(folder)
    shown.update({str(p.relative_to(folder)) + "/": "dir" for p in folder.rglob("*") if p.is_dir()})
    return shown


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "s"
    assert main(["search", *TINY, "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def finished_retrain(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("retrain") / "r"
    assert main(["retrain", "--genotype", "darts_v2", *RETRAIN_TINY, "-o", str(out)]) == 0
    return out


@pytest.fixture()
def project(tmp_path) -> Path:
    """A user's project folder: an events file, another program's temporary, their own metrics and picture."""
    folder = tmp_path / "myproject"
    (folder / "tensorboard").mkdir(parents=True)
    (folder / "tensorboard" / "events.out.tfevents.precious").write_bytes(b"the user's events")
    (folder / "tensorboard" / "run1").mkdir()
    (folder / "tensorboard" / "run1" / "events.out.tfevents.1").write_bytes(b"another run's events")
    (folder / ".editor.tmp12345").write_text("unsaved work")
    (folder / "metrics.jsonl").write_text('{"mine": 1}\n')
    (folder / "cell.png").write_bytes(b"my drawing")
    (folder / "src").mkdir()
    (folder / "src" / "main.py").write_text("print('hello')\n")
    return folder


SEARCH = ["search", *TINY]
RETRAIN = ["retrain", "--genotype", "darts_v2", *RETRAIN_TINY]


# ------------------------------------------------------------------------------------- 1. not our files: refused
@pytest.mark.parametrize("argv", [SEARCH, [*SEARCH, "--overwrite"], [*SEARCH, "--resume"], RETRAIN,
                                  [*RETRAIN, "--overwrite"], [*RETRAIN, "--resume"]],
                         ids=["search", "search-overwrite", "search-resume", "retrain", "retrain-overwrite",
                              "retrain-resume"])
def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(project, capsys, monkeypatch, argv):
    """Issue 29.1: ``search -o .`` in a project deleted tensorboard/events.out.tfevents.precious and
    .editor.tmp12345 and overwrote metrics.jsonl and cell.png; ``retrain -o .`` deleted tensorboard/run1/."""
    before = everything(project)
    monkeypatch.chdir(project)
    err = one_line_error(capsys, main([*argv, "-o", "."]), "choose another --output")
    assert "metrics.jsonl" in err or "src" in err or "tensorboard" in err, err
    assert everything(project) == before
    assert not (project / ".nni-offpolicy.lock").exists()  # refused before the lock: nothing left behind


@pytest.mark.parametrize("what", ["search-into-retrain", "retrain-into-search"])
@pytest.mark.parametrize("flag", [[], ["--overwrite"]])
def test_a_run_of_the_other_kind_is_never_written_into(finished_search, finished_retrain, tmp_path, capsys, what,
                                                       flag):
    """Issue 29.1: a finished search whose checkpoint.pt was removed, used as a retrain's -o, lost its metrics and
    events; the same the other way round."""
    source, argv = (finished_retrain, SEARCH) if what == "search-into-retrain" else (finished_search, RETRAIN)
    out = tmp_path / "run"
    shutil.copytree(source, out)
    (out / "checkpoint.pt").unlink()
    before = everything(out)
    other = "retrain" if what == "search-into-retrain" else "search"
    one_line_error(capsys, main([*argv, "-o", str(out), *flag]), other, "choose another --output")
    assert everything(out) == before


def test_overwrite_removes_only_what_the_search_wrote(finished_search, tmp_path, capsys):
    """--overwrite of a search's own folder: its files go, the user's notes, another program's temporary and a
    folder of TensorBoard runs someone added stay; a killed writer's temporary of ours goes."""
    out = tmp_path / "s"
    shutil.copytree(finished_search, out)
    (out / "notes.txt").write_text("what I saw\n")
    (out / ".editor.tmp12345").write_text("unsaved work")
    (out / "tensorboard" / "run1").mkdir()
    (out / "tensorboard" / "run1" / "keep").write_text("x")
    (out / ".metrics.jsonl.tmp99999999").write_text("half a line")
    old_events = sorted(p.name for p in (out / "tensorboard").glob("events.out.tfevents.*"))
    assert main([*SEARCH, "-o", str(out), "--overwrite", "--seed", "1"]) == 0
    assert (out / "notes.txt").read_text() == "what I saw\n"
    assert (out / ".editor.tmp12345").read_text() == "unsaved work"
    assert (out / "tensorboard" / "run1" / "keep").read_text() == "x"
    assert not (out / ".metrics.jsonl.tmp99999999").exists()
    new_events = sorted(p.name for p in (out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(new_events) == 1 and not set(new_events) & set(old_events)
    assert json.loads((out / MARKER).read_text())["kind"] == "search"
    capsys.readouterr()


def test_overwrite_removes_only_what_the_retrain_wrote(finished_retrain, tmp_path, capsys):
    out = tmp_path / "r"
    shutil.copytree(finished_retrain, out)
    (out / "tensorboard" / "run1").mkdir()
    (out / "notes.txt").write_text("keep\n")
    assert main([*RETRAIN, "-o", str(out), "--overwrite"]) == 0
    assert (out / "tensorboard" / "run1").is_dir() and (out / "notes.txt").read_text() == "keep\n"
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    capsys.readouterr()


def test_a_search_folder_of_an_earlier_version_is_still_its_own(finished_search, tmp_path, capsys):
    """A folder made before the marker existed holds only a search's names and its checkpoint: still the
    search's, so --resume and --overwrite keep working."""
    out = tmp_path / "s"
    shutil.copytree(finished_search, out)
    (out / MARKER).unlink()
    (out / "genotype.json").unlink()
    assert main([*SEARCH, "-o", str(out), "--resume"]) == 0
    assert (out / "genotype.json").exists() and (out / MARKER).exists()
    capsys.readouterr()


def test_an_empty_folder_or_one_holding_only_a_lock_is_used(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    (out / ".nni-offpolicy.lock").write_text("")  # what a refused run leaves in a folder it did not make
    assert main([*RETRAIN, "-o", str(out)]) == 0
    assert (out / "result.json").exists()
    capsys.readouterr()


# ------------------------------------------------------------------------------------- 12. names in the way
@pytest.mark.parametrize("name,make", [("metrics.jsonl", "dir"), ("checkpoint.pt", "dir"), ("tensorboard", "file"),
                                       ("genotype.json", "link")])
@pytest.mark.parametrize("flag", [[], ["--overwrite"], ["--resume"]])
def test_a_name_of_ours_of_the_wrong_kind_is_one_line(finished_search, tmp_path, capsys, name, make, flag):
    """A file named tensorboard, a folder named metrics.jsonl/checkpoint.pt: raw [Errno 17]/[Errno 21] with rc 1
    before (and --overwrite, which the resume message advised, failed the same way)."""
    out = tmp_path / "s"
    shutil.copytree(finished_search, out)
    path = out / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    if make == "dir":
        path.mkdir()
        (path / "mine").write_text("x")
    elif make == "file":
        path.write_text("mine")
    else:
        os.symlink(tmp_path / "elsewhere.json", path)
    before = everything(out)
    err = one_line_error(capsys, main([*SEARCH, "-o", str(out), *flag]), name)
    assert "Errno" not in err
    assert everything(out) == before


def test_a_symlink_loop_as_output_is_named_as_such(tmp_path, capsys):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    err = one_line_error(capsys, main([*RETRAIN, "-o", str(loop)]), str(loop), "symbolic link")
    assert "File exists" not in err


# ------------------------------------------------------------------------------ siblings: ablate, bench folders
def test_ablate_into_a_folder_of_other_files_is_refused(project, capsys):
    (project / "runs.csv").write_text("my,table\n")
    before = everything(project)
    code = main(["ablate", "--preset", "demo", "--seeds", "0", "--variants", "offpolicy-uniform", "-o", str(project)])
    one_line_error(capsys, code, "choose another --output")
    assert everything(project) == before


def test_bench_into_a_folder_of_other_files_is_refused(project, capsys):
    (project / "bench.json").write_text("{}")
    before = everything(project)
    code = main(["bench", "--preset", "demo", "--steps", "4", "--device", "cpu", "--weight-modes", "path",
                 "-o", str(project)])
    one_line_error(capsys, code, "choose another --output")
    assert everything(project) == before


def test_a_search_never_writes_into_an_ablation_folder(tmp_path, capsys):
    out = tmp_path / "grid"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"kind": "ablate"}))
    (out / "runs.csv").write_text("variant\n")
    one_line_error(capsys, main([*SEARCH, "-o", str(out), "--overwrite"]), "ablate")
    assert (out / "runs.csv").read_text() == "variant\n"


# ------------------------------------------------------------------------------------------- 2. metric modules
@pytest.mark.parametrize("spec,module", [("shutil:rmtree", "shutil"), ("os:remove", "os"),
                                         ("os.path:exists", "os"), ("pathlib:Path", "pathlib"),
                                         ("subprocess:run", "subprocess"), ("tempfile:mkdtemp", "tempfile"),
                                         ("reexport:latency", "shutil")])
def test_a_metric_from_a_file_system_module_is_refused_before_it_runs(tmp_path, monkeypatch, capsys, spec, module):
    """Issue 29.2: a metric named in a settings file is probed before anything else and ran shutil:rmtree on
    ./darts/ (the family name it is called with). A user module handing on a file-system function is refused too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "darts").mkdir()
    (tmp_path / "darts" / "keep.txt").write_text("precious")
    (tmp_path / "reexport.py").write_text("from shutil import rmtree as latency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "run.yml"
    config.write_text(f"metric: '{spec}'\n")
    out = tmp_path / "out"
    one_line_error(capsys, main([*SEARCH, "--config", str(config), "-o", str(out)]), spec, module)
    assert (tmp_path / "darts" / "keep.txt").read_text() == "precious"
    assert not out.exists()
