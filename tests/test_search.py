"""The progressive search: shrinking, derivation, path isolation, whole runs, resume after SIGKILL, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from nni_offpolicy.cli import main
from nni_offpolicy.search.controller import OffPolicyController
from nni_offpolicy.search.progressive import build_decisions, derive, shrink
from nni_offpolicy.search.loop import run_search
from nni_offpolicy.settings import load_settings
from nni_offpolicy.search.supernet import Supernet
from search_spaces.genotypes import genotype_from_dict, sample_to_genotype, validate_genotype
from search_spaces.presets import build_space, initial_edge_ops

from fixtures import TINY, set_flags




def uniform_probs(edge_ops, family="darts"):
    c = OffPolicyController(build_decisions(family, edge_ops))
    return c.probabilities()


def test_shrink_keeps_each_edges_own_top_k():
    edge_ops = initial_edge_ops("darts")
    probs = uniform_probs(edge_ops)
    ops = edge_ops["normal"]["2_0"]
    probs["normal/op_2_0"] = {o: (0.5 if o == "sep_conv_5x5" else 0.3 if o == "none" else 0.2 if o == "max_pool_3x3"
                                  else 0.0) for o in ops}
    probs["normal/op_2_1"] = {o: (0.6 if o == "dil_conv_3x3" else 0.4 if o == "skip_connect" else 0.1 if
                                  o == "avg_pool_3x3" else 0.0) for o in ops}
    shrunk, _ = shrink(edge_ops, probs, 3)
    assert shrunk["normal"]["2_0"] == ["none", "max_pool_3x3", "sep_conv_5x5"]  # original order kept
    assert shrunk["normal"]["2_1"] == ["avg_pool_3x3", "skip_connect", "dil_conv_3x3"]
    assert all(len(v) == 3 for kind in shrunk.values() for v in kind.values())
    # the shrunk space builds, with its per-edge candidate lists
    space = build_space("pdarts", shrunk, layers=3, channels=4)
    simplified = space.simplify()
    assert list(simplified["normal/op_2_0"].values) == ["none", "max_pool_3x3", "sep_conv_5x5"]


def test_derivation_limits_skip_connects_and_drops_none():
    """Breakages caught: more than max_skip_connect skips kept; ``none`` derived; the skips dropped being other
    than the weakest (P-DARTS keeps the strongest); the derivation taking an edge's first op, not its best."""
    edge_ops = initial_edge_ops("darts")
    probs = uniform_probs(edge_ops)
    order = torch.randperm(14, generator=torch.Generator().manual_seed(3)).tolist()
    strength = {}
    for label, p in probs.items():
        if "/op_" in label:
            for op in p:
                p[op] = {"none": 0.5, "skip_connect": 0.3, "sep_conv_3x3": 0.1}.get(op, 0.01)
            j, i = (int(t) for t in label.split("_")[-2:])
            # distinct skip strengths, in an order unrelated to the labels' (edge k of 14 gets rank order[k])
            p["skip_connect"] += 0.001 * order[j * (j - 1) // 2 - 1 + i]
            strength[label] = p["skip_connect"]
    sample = derive("darts", edge_ops, probs, max_skip_connect=2)
    genotype = sample_to_genotype(sample)
    normal_ops = [op for op, _ in genotype.normal]
    assert normal_ops.count("skip_connect") == 2
    assert "none" not in normal_ops and "none" not in [op for op, _ in genotype.reduce]
    assert set(normal_ops) == {"skip_connect", "sep_conv_3x3"}
    # the two skips kept are the strongest ones among the chosen edges
    chosen = [f"normal/op_{j}_{i}" for j in range(2, 6) for i in sample[f"normal/input_{j}"]]
    kept = {label for label in chosen if sample[label] == "skip_connect"}
    assert kept == set(sorted(chosen, key=strength.__getitem__)[-2:]), (kept, {c: strength[c] for c in chosen})
    assert [op for op, _ in genotype.reduce] == ["skip_connect"] * 8  # no limit in the reduction cell
    validate_genotype(genotype, distinct_inputs=True)


def test_path_mode_runs_only_sampled_ops_and_inputs():
    edge_ops = initial_edge_ops("darts")
    supernet = Supernet(build_space("darts", edge_ops, layers=3, channels=4))
    controller = OffPolicyController(build_decisions("darts", edge_ops), seed=5)
    sample = controller.to_sample(controller.sample(1).actions[0])
    called: set[tuple[str, str]] = set()
    for label, edges in supernet.edges.items():
        for edge in edges:
            for name, op in edge.ops.items():
                op.register_forward_hook(lambda m, i, o, key=(label, name): called.add(key))
    supernet.set_path(sample)
    supernet(torch.randn(2, 3, 8, 8))
    expected = set()
    for kind in ("normal", "reduce"):
        for j in range(2, 6):
            for i in sample[f"{kind}/input_{j}"]:
                expected.add((f"{kind}/op_{j}_{i}", sample[f"{kind}/op_{j}_{i}"]))
    assert called == expected and len(called) == 16
    called.clear()
    supernet.set_mixed({label: torch.full((len(edge_ops["normal"]["2_0"]),), 0.125) for label in supernet.edges})
    supernet(torch.randn(2, 3, 8, 8))
    assert len(called) == 2 * 14 * 8  # mixed: every op of every edge


def test_tiny_search_ends_with_valid_genotype_and_outputs(tmp_path):
    doc = run_search(load_settings("demo", TINY), tmp_path)
    genotype = genotype_from_dict(doc["genotype"])
    validate_genotype(genotype, distinct_inputs=True)
    assert [op for op, _ in genotype.normal].count("skip_connect") <= 2
    assert "none" not in [op for op, _ in genotype.normal + genotype.reduce]
    final_ops = doc["stages"][-1]["edge_ops"]
    for k, (op, i) in enumerate(genotype.normal):
        assert op in final_ops["normal"][f"{2 + k // 2}_{i}"]  # derived from the last stage's own lists
    assert all(len(v) == 2 for v in final_ops["normal"].values())
    assert doc["params_m"] > 0 and doc["flops_m"] > 0 and 0 <= doc["derived_valid_acc"] <= 100
    assert doc["best_sampled"]["stage"] == 3
    saved = json.loads((tmp_path / "genotype.json").read_text())
    assert saved["genotype"] == doc["genotype"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["stage"] == 3
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000
    assert (tmp_path / "checkpoint.pt").exists()


def test_nb201_search_gives_an_arch_string(tmp_path):
    overrides = {**TINY, "layers": "1,1,1", "ops_kept": "3,2,1", "eval_layers": 1}
    doc = run_search(load_settings("nb201", {**overrides, "dataset": "digits"}), tmp_path)
    assert doc["arch"].count("~") == 6 and doc["genotype"] == doc["arch"]


def _cli(args, tmp_path, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nni_offpolicy.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_killed_search_resumes_to_the_same_genotype(tmp_path):
    overrides = {**TINY, "epochs": "3,2,2"}
    reference = run_search(load_settings("demo", overrides), tmp_path / "ref")
    out = tmp_path / "killed"
    proc = _cli(["search", "--preset", "demo", "--output", str(out), *set_flags(overrides)], tmp_path)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill after the second epoch's checkpoint, mid-way through the first stage
        lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
        if len(lines) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "genotype.json").exists()
    resumed = _cli(["search", "--preset", "demo", "--output", str(out), "--resume", *set_flags(overrides)], tmp_path)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    result = json.loads((out / "genotype.json").read_text())
    assert result["genotype"] == reference["genotype"]
    assert result["best_sampled"]["genotype"] == reference["best_sampled"]["genotype"]
    assert result["derived_valid_acc"] == pytest.approx(reference["derived_valid_acc"])
    epochs = [(r["stage"], r["epoch"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
    assert epochs == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (3, 2)]


@pytest.mark.parametrize("flags,expected", [
    (["--layers", "5,11"], "has 3 entries but layers has 2 stages"),
    (["--set", "ops_kept=9,3,1"], "ops_kept: stage 1 keeps 9 ops"),
    (["--set", "ops_kept=4,2,2"], "last stage must keep 1"),
    (["--epsilon", "1.5"], "epsilon must be in [0, 1]"),
    (["--behaviour", "greedy"], "unknown behaviour policy 'greedy'; allowed: uniform, egreedy"),
    (["--size-target", "0"], "size_target must be > 0"),
    (["--weight-mode", "both"], "unknown weight mode"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--space", "resnet"], "unknown space 'resnet'"),
    (["--dataset", "mnist"], "mnist"),
    (["--dataset", "imagefolder:/nonexistent/data.tar.gz"], "/nonexistent/data.tar.gz"),
    (["--set", "colour=blue"], "unknown setting 'colour'"),
])
def test_bad_input_is_one_line_before_training(tmp_path, capsys, flags, expected):
    out = tmp_path / "out"
    code = main(["search", "--output", str(out), "--quiet", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_non_finite_reward_stops_with_stage_epoch_and_keeps_checkpoint(tmp_path, monkeypatch):
    (tmp_path / "nan_metric.py").write_text("def latency(family, arch):\n    return float('nan')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    code = main(["search", "--output", str(out), *set_flags({**TINY, "metric": "nan_metric:latency",
                                                          "metric_exponent": -0.1})])
    assert code == 2
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["stage"], state["next_epoch"]) == (0, 1)  # the warm-up epoch's checkpoint, intact
    assert not (out / "genotype.json").exists()


def test_nan_message_names_stage_epoch_and_step(tmp_path, capsys):
    code = main(["search", "--output", str(tmp_path / "nan"), *set_flags({**TINY, "lr": 1e30})])
    err = capsys.readouterr().err
    assert code == 2 and "stage 1, epoch 1, step" in err, err


def test_unknown_controller_setting_is_one_line(tmp_path, capsys):
    code = main(["search", "--output", str(tmp_path / "out"), "--set", "controller=evolution"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown controller 'evolution'; allowed: reinforce, darts, random" in err
    assert len(err.splitlines()) == 1


# ---------------------------------------------------------- the random and darts controllers (ablation variants)
def test_random_shrink_is_uniform_seeded_and_unbiased():
    edge_ops = initial_edge_ops("darts")
    probs = OffPolicyController(build_decisions("darts", edge_ops)).probabilities()  # uniform pi
    ops = edge_ops["normal"]["2_0"]
    # uniform pi without a generator: the tie order keeps the first ops (the bias the random variant avoids)
    assert shrink(edge_ops, probs, 2)[0]["normal"]["2_0"] == ops[:2]
    counts: Counter = Counter()
    for seed in range(200):
        kept, _ = shrink(edge_ops, probs, 2, generator=torch.Generator().manual_seed(seed))
        assert all(len(v) == 2 for kind in kept.values() for v in kind.values())
        counts.update(kept["normal"]["2_0"])
    assert set(counts) == set(ops) and max(counts.values()) < 2 * min(counts.values())  # ~50 each
    same = [shrink(edge_ops, probs, 3, generator=torch.Generator().manual_seed(5))[0] for _ in range(2)]
    assert same[0] == same[1]


def test_random_derivation_gives_valid_different_genotypes():
    edge_ops = initial_edge_ops("darts")
    probs = OffPolicyController(build_decisions("darts", edge_ops)).probabilities()
    genotypes = set()
    for seed in range(20):
        sample = derive("darts", edge_ops, probs, 2, generator=torch.Generator().manual_seed(seed))
        genotype = validate_genotype(sample_to_genotype(sample), distinct_inputs=True)
        assert "none" not in [op for op, _ in genotype.normal + genotype.reduce]
        assert [op for op, _ in genotype.normal].count("skip_connect") <= 2
        genotypes.add(str(genotype))
    assert len(genotypes) == 20
    nb = initial_edge_ops("nb201")
    nb_probs = OffPolicyController(build_decisions("nb201", nb)).probabilities()
    archs = {str(derive("nb201", nb, nb_probs, generator=torch.Generator().manual_seed(s))) for s in range(10)}
    assert len(archs) > 1


def test_edge_strength_picks_the_two_strongest_edges_not_the_pair_probabilities():
    edge_ops = initial_edge_ops("darts")
    probs = OffPolicyController(build_decisions("darts", edge_ops)).probabilities()
    n = len(edge_ops["normal"]["3_0"])
    for i, strongest in ((0, 0.2), (1, 0.5), (2, 0.6)):  # node 3's edges: best non-none op probability
        probs[f"normal/op_3_{i}"] = {op: (strongest if op == "sep_conv_3x3" else (1 - strongest) / (n - 1))
                                     for op in edge_ops["normal"]["3_0"]}
    probs["normal/op_3_0"]["none"] = 0.9  # `none` does not count toward an edge's strength
    probs["normal/input_3"] = {"0+1": 0.8, "0+2": 0.1, "1+2": 0.1}
    assert derive("darts", edge_ops, probs)["normal/input_3"] == [0, 1]
    by_strength = derive("darts", edge_ops, probs, inputs="edge_strength")
    assert by_strength["normal/input_3"] == [1, 2]
    validate_genotype(sample_to_genotype(by_strength), distinct_inputs=True)
    with pytest.raises(ValueError, match="unknown input rule"):
        derive("darts", edge_ops, probs, inputs="strongest")


class _Killed(Exception):
    pass


@pytest.mark.parametrize("controller", ["darts", "random"])
def test_darts_and_random_searches_resume_to_the_same_result(tmp_path, controller):
    overrides = {"space": "nb201", "layers": "1,1,1", "epochs": "2,2,2", "warmup_epochs": "1,1,1",
                 "ops_kept": "3,2,1", "channels": 4, "batch_size": 128, "max_steps_per_epoch": 4,
                 "rl_interval_steps": 2, "samples_per_update": 4, "eval_layers": 1, "eval_channels": 4,
                 "progress": False, "threads": 1, "controller": controller, "seed": 3}
    reference = run_search(load_settings("demo", overrides), tmp_path / "ref")
    seen = []

    def kill_in_stage_2(record):
        seen.append(record)
        if (record["stage"], record["epoch"]) == (2, 2):  # its checkpoint is not written: resume from (2, 1)
            raise _Killed

    with pytest.raises(_Killed):
        run_search(load_settings("demo", overrides), tmp_path / "run", on_epoch=kill_in_stage_2)
    resumed = run_search(load_settings("demo", overrides), tmp_path / "run", resume=True)
    assert resumed["arch"] == reference["arch"]
    assert resumed["derived_valid_acc"] == pytest.approx(reference["derived_valid_acc"])
    def untimed(stages):  # everything but the stage-end evaluation's wall time
        return [{k: v for k, v in st.items() if k != "eval_seconds"} for st in stages]

    assert untimed(resumed["stages"]) == untimed(reference["stages"])
