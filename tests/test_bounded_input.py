"""Issue 29, items 5, 7, 8, 10, 11 and 12: no traceback, abort or hang on any input, and each message says what was
wrong, once, briefly. Every case is refused (or answered) before any training: seconds for the whole module."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nni_offpolicy.cli import main

from test_hostile import REPO, RETRAIN_TINY, TINY, one_line_error

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
DARTS_OP_ARCH = ARCH.replace("nor_conv_1x1", "sep_conv_3x3")
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.fixture()
def table(tmp_path) -> Path:
    """A two-row NB201 table: enough for lookup to read before it reads the cells."""
    path = tmp_path / "t.csv"
    other = ARCH.replace("avg_pool_3x3", "none")
    path.write_text(f"arch,acc,loss\n{ARCH},70.5,inf\n{other},60.0,1.5\n")
    return path


# ------------------------------------------------------------------------ 7. one bounded reader: nesting
@pytest.mark.parametrize("argv", [
    ["lookup", "{deep}", "--table", "{table}"],
    ["lookup", ARCH, "--table", "{deep}"],
    ["profile", "{deep}"],
    ["plot", "{deep}", "-o", "{dir}/x.png"],
    ["retrain", "--genotype", "{deep}", *RETRAIN_TINY, "-o", "{dir}/r"],
    ["search", "--config", "{deep}", "-o", "{dir}/s"],
    ["search", "--config", "{deep_yml}", "-o", "{dir}/s"],
], ids=["lookup-file", "lookup-table", "profile", "plot", "retrain", "config-json", "config-yaml"])
def test_json_nested_200000_deep_is_one_line(tmp_path, table, capsys, argv):
    """Issue 29.7: RecursionError in lookup (file and table), profile, retrain, plot and --config."""
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    deep_yml = tmp_path / "deep.yml"
    deep_yml.write_text("preset: " + DEEP)
    argv = [a.format(deep=deep, table=table, dir=tmp_path, deep_yml=deep_yml) for a in argv]
    one_line_error(capsys, main(argv), "nested deeper than")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


# ------------------------------------------------------------------ 8. non-regular files and absurd sizes
@pytest.mark.parametrize("argv", [["lookup", ARCH, "--table", "{path}"], ["profile", "{path}"],
                                  ["search", "--config", "{path}"]], ids=["table", "profile", "config"])
def test_dev_zero_is_refused_up_front(capsys, argv):
    """Issue 29.8: /dev/zero as --table was a MemoryError."""
    one_line_error(capsys, main([a.format(path="/dev/zero") for a in argv]), "/dev/zero", "device")


def test_a_fifo_as_table_is_refused_without_hanging(tmp_path):
    """Issue 29.8: --table on a FIFO hung with no output (nothing ever writes to it)."""
    fifo = tmp_path / "table.csv"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "nni_offpolicy.cli", "lookup", ARCH, "--table", str(fifo)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "FIFO" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_absurdly_large_table_is_refused_before_it_is_read(tmp_path, capsys):
    """Issue 29.8: a 1 GB one-line CSV was a MemoryError (a sparse file: no disk used)."""
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:
        handle.truncate(1 << 30)
    one_line_error(capsys, main(["lookup", ARCH, "--table", str(big)]), str(big), "over the")


def test_a_yaml_alias_bomb_is_refused(tmp_path, capsys):
    """Issue 29.8: a 9-level YAML alias bomb under preset: was a MemoryError."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, 10):
        lines.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
    lines.append("preset: *a9")
    config = tmp_path / "bomb.yml"
    config.write_text("\n".join(lines) + "\n")
    one_line_error(capsys, main(["search", "--config", str(config), "-o", str(tmp_path / "s")]), "alias")


def test_a_yaml_alias_that_refers_to_itself_is_refused(tmp_path, capsys):
    config = tmp_path / "loop.yml"
    config.write_text("layers: &x [1, *x]\n")
    one_line_error(capsys, main(["search", "--config", str(config), "-o", str(tmp_path / "s")]), "itself")


@pytest.mark.parametrize("text,expected", [
    ("layers: [3, 3, 1000000]\n", "layers must be at most 200"),      # a MemoryError at stage 3
    ("threads: 3000\n", "threads must be in 0.."),                     # aborted in libgomp
    ("threads: 100000000\n", "threads must be in 0.."),
    ("eval_channels: 10000000\n", "eval_channels must be at most"),
    ("seed: true\n", "seed: expected an integer, got True"),           # was seed 1
    ("lr: yes\n", "lr: expected a number, got True"),
    ("dataset: {imagefolder: /etc}\n", "dataset: expected text, got dict"),  # became a string
    ("1: 2\n", "setting names are text, got 1"),                       # AttributeError
    ("~: 1\n", "setting names are text, got None"),
    ("zero_cost: naswot\nzero_cost_images: 1\n", "zero_cost_images must be >= 2"),  # every cell the same score
    ("reward_source: table\nreward_table: t.csv:acc\nfinal_pick: zero-cost\n", "final_pick=zero-cost"),
], ids=["layers", "threads-3000", "threads-1e8", "channels", "seed-true", "lr-yes", "dataset-dict", "key-int",
        "key-null", "zero-cost-images", "table-zero-cost"])
def test_bad_settings_are_refused_at_validation(tmp_path, table, capsys, monkeypatch, text, expected):
    monkeypatch.chdir(table.parent)
    config = tmp_path / "run.yml"
    config.write_text(text)
    err = one_line_error(capsys, main(["search", "--config", str(config), "-o", str(tmp_path / "s")]), expected)
    assert "zero_cost=naswot" not in err  # the table source refuses it too: not advice to give
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("flags,expected", [(["--layers", "100000"], "layers must be in 1..200"),
                                            (["--channels", "100000"], "channels must be in 1..2048")])
def test_bad_retrain_sizes_are_refused_at_validation(tmp_path, capsys, flags, expected):
    one_line_error(capsys, main(["retrain", "--genotype", "darts_v2", *RETRAIN_TINY, *flags,
                                 "-o", str(tmp_path / "r")]), expected)


# ----------------------------------------------------------------------------- 5. wrong results, exit 0
def test_a_one_class_image_folder_is_refused(tmp_path, capsys, monkeypatch):
    """Issue 29.5: a one-class image folder ran to "100 % valid accuracy"."""
    monkeypatch.setenv("NNI_OFFPOLICY_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "img" / "only"
    folder.mkdir(parents=True)
    for i in range(40):
        Image.fromarray(np.full((8, 8), i * 5, np.uint8)).save(folder / f"{i}.png")
    code = main(["search", *TINY, "--dataset", f"imagefolder:{tmp_path / 'img'}", "-o", str(tmp_path / "s")])
    one_line_error(capsys, code, "one class", "two class folders")


@pytest.mark.parametrize("argv", [["profile", DARTS_OP_ARCH], ["lookup", DARTS_OP_ARCH, "--table", "{table}"]])
def test_nb201_arch_strings_with_darts_ops_are_refused(table, capsys, argv):
    """Issue 29.5: sep_conv_3x3 ranked 1 / 15626 in a table holding that row."""
    one_line_error(capsys, main([a.format(table=table) for a in argv]), "sep_conv_3x3", "not a NAS-Bench-201 op")


def test_a_table_row_with_a_darts_op_is_refused(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text(f"arch,acc\n{ARCH},70\n{DARTS_OP_ARCH},99\n")
    one_line_error(capsys, main(["lookup", ARCH, "--table", str(path)]), "row 2", "not a NAS-Bench-201 op")


def test_a_genotype_json_family_is_honoured(tmp_path, capsys):
    """Issue 29.5: retrain --genotype ignored a genotype.json's family."""
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"family": "darts", "genotype": ARCH}))
    one_line_error(capsys, main(["retrain", "--genotype", str(wrong), *RETRAIN_TINY, "-o", str(tmp_path / "r")]),
                   "its family is darts")
    sample = dict(zip([f"cell/op_{j}_{i}" for j, i in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))],
                      ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"]))
    right = tmp_path / "right.json"
    right.write_text(json.dumps({"family": "nb201", "genotype": sample}))
    assert main(["profile", str(right), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "nb201"
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"family": "resnet", "genotype": ARCH}))
    one_line_error(capsys, main(["profile", str(unknown)]), "family 'resnet'")


# ----------------------------------------------------------------------- 10. what NNI hands us, checked
def _registry(home: Path, entry: dict) -> None:
    (home / "nni-experiments").mkdir(parents=True)
    (home / "nni-experiments" / ".experiment").write_text(json.dumps({"Ab12Cd34": entry}))


def test_a_malformed_registry_entry_is_one_line_naming_the_registry(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _registry(tmp_path / "home", {"logDir": ["a"], "status": "STOPPED", "port": 8080})
    err = one_line_error(capsys, main(["export", "--experiment", "Ab12Cd34", "-o", "-"]), "logDir",
                         "experiment list")
    assert "TypeError" not in err


class _Manager(http.server.BaseHTTPRequestHandler):
    replies: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.replies.get(self.path.rsplit("/api/v1/nni/", 1)[-1], "null").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("replies,expected", [
    ({"experiment": "[1, 2]"}, "GET experiment answered list"),
    ({"experiment": '{"id": "Ab12Cd34"}', "check-status": '{"status": "RUNNING"}',
      "trial-jobs": '[{"status": "SUCCEEDED"}]', "metric-data": "[]"}, "without a trialJobId"),
    ({"experiment": '{"id": "Ab12Cd34"}', "check-status": '{"status": "RUNNING"}', "trial-jobs": "[]",
      "metric-data": '"x"'}, "GET metric-data answered str"),
], ids=["experiment-list", "no-trial-id", "metrics-str"])
def test_a_managers_malformed_reply_is_one_line_naming_the_manager(tmp_path, monkeypatch, capsys, replies, expected):
    """Issue 29.10: a reply without trialJobId, or an /experiment reply that is a list, was a KeyError or an
    AttributeError."""
    _Manager.replies = replies
    server = http.server.HTTPServer(("127.0.0.1", 0), _Manager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        _registry(tmp_path / "home", {"port": server.server_address[1], "status": "RUNNING", "pid": os.getpid(),
                                      "logDir": str(tmp_path)})
        one_line_error(capsys, main(["export", "--experiment", "Ab12Cd34", "-o", "-"]), "NNI manager", expected)
    finally:
        server.shutdown()
        server.server_close()


def test_a_trial_sequence_id_that_is_no_number_is_one_line(tmp_path, monkeypatch, capsys):
    """Issue 29.10: NNI_TRIAL_SEQ_ID=abc trial ... was a ValueError traceback."""
    monkeypatch.setenv("NNI_TRIAL_SEQ_ID", "abc")
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, main(["trial", "search", "--preset", "demo"]), "NNI_TRIAL_SEQ_ID='abc'")


# --------------------------------------------------------------------------- 11. a call inside Genotype(...)
@pytest.mark.parametrize("text", [
    "Genotype(x) or __import__('os').system('touch {marker}') or (1)",
    "Genotype(normal=__import__('os').system('touch {marker}'), normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(**{{'normal': 1}})",
])
def test_a_pasted_genotype_with_a_call_inside_is_one_line_and_runs_nothing(tmp_path, capsys, text):
    marker = tmp_path / "ran"
    for argv in (["profile", text.format(marker=marker)], ["plot", text.format(marker=marker), "-o",
                                                             str(tmp_path / "c.png")]):
        err = one_line_error(capsys, main(argv), "Genotype")
        assert "AttributeError" not in err
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- 12. messages
def test_a_genotype_file_holding_printed_text_is_read_as_that_text(tmp_path, capsys):
    """Issue 29.12: ``profile g/strgeno.json`` said "Expecting value: line 1 column 1"."""
    from search_spaces.genotypes import PUBLISHED

    strgeno = tmp_path / "strgeno.json"
    strgeno.write_text(str(PUBLISHED["pdarts"]) + "\n")
    assert main(["profile", str(strgeno), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "darts"
    quoted = tmp_path / "quoted.json"
    quoted.write_text(json.dumps("Genotipe(normal=...)"))
    err = one_line_error(capsys, main(["profile", str(quoted)]), str(quoted), "neither a Genotype")
    assert "Expecting value" not in err


def test_an_empty_genotype_is_not_the_working_directory(capsys):
    """Issue 29.12: ``profile ""`` said "Is a directory: '.'"."""
    err = one_line_error(capsys, main(["profile", ""]), "no genotype given")
    assert "directory" not in err


def test_plot_into_a_file_used_as_a_folder_says_it_is_a_file(tmp_path, capsys):
    """Issue 29.12: plot -o existing_file.txt/x.png said the folder does not exist."""
    existing = tmp_path / "existing_file.txt"
    existing.write_text("mine")
    err = one_line_error(capsys, main(["plot", "darts_v2", "-o", str(existing / "x.png")]), "is a file")
    assert "does not exist" not in err and existing.read_text() == "mine"


@pytest.mark.parametrize("argv", [["profile", "|" + "x" * 10_000_000 + "~0|+|none~0|none~1|+|none~0|none~1|none~2|"],
                                  ["search", "--set", "behaviour=" + "y" * 10_000_000]])
def test_a_10_mb_value_is_not_echoed_whole(capsys, argv):
    err = one_line_error(capsys, main(argv))
    assert len(err) < 2_000, len(err)


def test_a_boolean_column_names_its_first_offending_row(tmp_path, capsys):
    """Issue 29.12: a table whose one value column is boolean said "no numeric column" without the row."""
    only = tmp_path / "only.json"
    only.write_text(json.dumps([{"arch": ARCH, "acc": 70.0}, {"arch": ARCH.replace("avg_pool_3x3", "none"),
                                                              "acc": True}]))
    for argv in (["lookup", ARCH, "--table", str(only)], ["lookup", ARCH, "--table", f"{only}:acc"]):
        one_line_error(capsys, main(argv), "'acc' is not numeric", "row 2")
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"arch": ARCH, "acc": 70.0, "other": 1}, {"arch": ARCH.replace("avg_pool_3x3", "none"),
                                                                          "acc": True, "other": 2}]))
    one_line_error(capsys, main(["lookup", ARCH, "--table", f"{path}:acc"]), "'acc' is not numeric", "row 2")
    one_line_error(capsys, main(["search", "--preset", "nb201", "--set", "reward_source=table",
                                 "--set", f"reward_table={path}:acc", "-o", str(tmp_path / "s")]), "row 2")


def test_an_inf_in_an_unrequested_column_is_no_value_like_nan(table, capsys):
    """Issue 29.12: an inf in an unrequested column failed the lookup while a NaN passed as "no value"."""
    assert main(["lookup", ARCH, "--table", str(table), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["results"][0]["values"]) == ["acc"]


def test_bench_warm_skip_too_large_is_blamed_not_steps(tmp_path, capsys):
    """Issue 29.12: bench --warm-skip 100000 blamed --steps."""
    err = one_line_error(capsys, main(["bench", "--against", "nni", "--device", "cpu", "--dataset", "digits",
                                       "--warm-skip", "100000", "--steps", "3", "--sides", "nni-darts",
                                       "-o", str(tmp_path / "b")]), "--warm-skip")
    assert "fewer --steps" not in err
