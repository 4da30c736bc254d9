"""One search on several devices (Lightning Fabric, ddp_spawn): real replicas as gloo processes on the CPU."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nni_offpolicy.cli import main
from nni_offpolicy.errors import UserError
from nni_offpolicy.search.replicas import Replicas, ReplicasDiverged, check_devices, launch
from nni_offpolicy.search.loop import run_search
from nni_offpolicy.settings import load_settings
from nni_offpolicy.search.supernet import Supernet
from search_spaces.presets import build_space, initial_edge_ops

from fixtures import TINY_REPLICAS, set_flags


def _supernet() -> Supernet:
    torch.manual_seed(0)
    space = build_space("pdarts", initial_edge_ops("pdarts", 4), layers=3, channels=4, num_classes=10,
                        in_channels=1, nodes=4)
    net = Supernet(space)
    net.set_path({**{f"{kind}/op_{j}_{i}": "sep_conv_3x3" for kind in ("normal", "reduce")
                     for j in range(2, 6) for i in range(j)},
                  **{f"{kind}/input_{j}": [0, 1] for kind in ("normal", "reduce") for j in range(2, 6)}})
    return net


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def _replica_gradients(replicas: Replicas, on_epoch, unused: int) -> list[torch.Tensor]:
    torch.set_num_threads(1)
    net = _supernet()
    x, y = replicas.shard(*_batch())
    F.cross_entropy(net(x), y).backward()
    params = [p for p in net.parameters()]
    replicas.average_gradients(params)
    return [p.grad.clone() for p in params if p.grad is not None]


def test_averaged_gradients_are_data_parallels_over_the_whole_batch():
    """What two replicas hold after a step is what nn.DataParallel computes: the mean of the per-slice losses'
    gradients (each slice with its own batch-norm statistics)."""
    replicated = launch(_replica_gradients, 2, "cpu", None, 0)
    net = _supernet()
    x, y = _batch()
    halves = zip(x.tensor_split(2), y.tensor_split(2))
    (sum(F.cross_entropy(net(xh), yh) for xh, yh in halves) / 2).backward()
    expected = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(replicated) == len(expected) > 0
    for got, want in zip(replicated, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # and not the gradient of the whole batch through one batch norm: the split really happened
    whole = _supernet()
    F.cross_entropy(whole(x), y).backward()
    assert any(not torch.allclose(p.grad, w) for p, w in
               zip([p for p in whole.parameters() if p.grad is not None], expected))


def test_two_replicas_run_one_search_with_the_same_schedule(tmp_path):
    """A whole 3-stage search on two replicas: outputs written once, each epoch reported once to the caller in the
    launching process (an NNI trial's callback), the same steps and controller updates as on one device, and the
    replicas' weights equal at every stage end (checked inside the search)."""
    settings = load_settings("demo", TINY_REPLICAS)
    reports: list[dict] = []
    single = run_search(settings, tmp_path / "one")
    settings = load_settings("demo", {**TINY_REPLICAS, "devices": 2})
    doc = run_search(settings, tmp_path / "two", on_epoch=reports.append)
    assert [r["global_epoch"] for r in reports] == [1, 2, 3, 4, 5, 6]
    lines = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert lines == reports
    one_lines = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["controller_updates"] for r in lines] == [r["controller_updates"] for r in one_lines] == [0, 2, 2, 4, 4, 6]
    saved = json.loads((tmp_path / "two" / "genotype.json").read_text())
    assert saved["genotype"] == doc["genotype"] and saved["settings"]["devices"] == 2
    assert len(doc["stages"]) == len(single["stages"]) == 3
    assert (tmp_path / "two" / "tensorboard").is_dir() and (tmp_path / "two" / "checkpoint.pt").exists()


def test_divergence_in_one_replica_stops_all_with_one_message(tmp_path, capfd):
    """capfd, not capsys: the spawned replicas write to the inherited file descriptor 2, which capsys (this
    process's sys.stderr) never sees, so a traceback printed by a replica would go unnoticed."""
    out = tmp_path / "nan"
    code = main(["search", "--preset", "demo", "--output", str(out), "--set", "devices=2", "--set", "lr=1e30",
                 *set_flags(TINY_REPLICAS)])
    err = capfd.readouterr().err
    assert code == 2
    assert "Traceback" not in err, err
    message = [line for line in err.splitlines() if line.startswith("nni-offpolicy search: error:")]
    assert len(message) == 1 and "at stage 1, epoch 1, step" in message[0], err
    assert not (out / "genotype.json").exists()


def _replica_with_drifted_weights(replicas: Replicas, on_epoch, unused: int) -> None:
    torch.set_num_threads(1)
    net = _supernet()
    if replicas.rank == 1:
        with torch.no_grad():
            next(net.parameters()).add_(1e-3)
    replicas.check_in_step(net, "at the end of stage 2")


def test_replicas_whose_weights_differ_stop_with_the_one_line_user_error(capfd):
    """Breakage caught: the stage-end weight check missing, or surfacing as a bare RuntimeError (a traceback from
    every replica and a launcher error) instead of the codebase's one-line UserError."""
    with pytest.raises(ReplicasDiverged, match=r"^replicas diverged at the end of stage 2: their weights differ "
                                              r"\(weight sums [-0-9.e]+, [-0-9.e]+\)") as caught:
        launch(_replica_with_drifted_weights, 2, "cpu", None, 0)
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)
    assert "Traceback" not in capfd.readouterr().err  # (equal weights pass it: every two-replica search above)


@pytest.mark.parametrize("overrides, expected", [
    ({"devices": 3}, "batch_size 64 does not split evenly over 3 devices"),
    ({"devices": 0}, "devices must be > 0"),
])
def test_bad_device_counts_are_one_line_before_anything_runs(tmp_path, capsys, overrides, expected):
    out = tmp_path / "bad"
    code = main(["search", "--preset", "demo", "--output", str(out),
                 *set_flags({**TINY_REPLICAS, **overrides})])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_one_named_gpu_cannot_hold_several_replicas():
    with pytest.raises(UserError, match="names one GPU but devices=2"):
        check_devices(2, torch.device("cuda:1"), 64)
