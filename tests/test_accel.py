"""The GPU fast path's settings (accel.py), on the CPU: the fast path must compute the same thing as fp32
(close losses, the same outputs for another memory layout or compiled ops), and ``auto`` resolves to it on CUDA
only."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import nni_offpolicy.search.accel as accel_mod
from nni_offpolicy.search.accel import Accel, NonFiniteWatch
from nni_offpolicy.search.controller import OffPolicyController
from nni_offpolicy.search.progressive import build_decisions
from nni_offpolicy.settings import load_settings
from nni_offpolicy.search.supernet import Supernet
from search_spaces.presets import build_space, initial_edge_ops

CPU = torch.device("cpu")


def tiny_supernet(seed: int = 0) -> tuple[Supernet, OffPolicyController]:
    torch.manual_seed(seed)
    edge_ops = initial_edge_ops("pdarts")
    supernet = Supernet(build_space("pdarts", edge_ops, layers=3, channels=8))
    return supernet.train(), OffPolicyController(build_decisions("darts", edge_ops), seed=seed)


def test_bf16_autocast_loss_is_close_to_fp32_on_the_same_weights_and_batch():
    supernet, controller = tiny_supernet()
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    uniform = {label: torch.full((8,), 1 / 8) for label in supernet.edges}
    path = controller.to_sample(controller.sample(1).actions[0])
    for configure in (lambda: supernet.set_mixed(uniform), lambda: supernet.set_path(path)):
        configure()
        with torch.no_grad():
            fp32 = Accel(CPU).forward(supernet, x)
            bf16 = Accel(CPU, precision="bf16").forward(supernet, x)
            nhwc = Accel(CPU, channels_last=True).forward(supernet, x)
        assert bf16.dtype == torch.float32  # logits come back as fp32 for the loss
        loss32, loss16 = F.cross_entropy(fp32, y), F.cross_entropy(bf16, y)
        assert torch.isfinite(loss16) and abs(float(loss16 - loss32)) < 0.02 * float(loss32)
        assert torch.allclose(nhwc, fp32, atol=1e-4)  # layout changes nothing but the speed


def test_auto_resolves_to_the_fast_path_on_cuda_only():
    settings = load_settings("demo")
    assert (settings.precision, settings.channels_last, settings.compile) == ("auto", "auto", "off")
    on_cpu = Accel.from_settings(settings, CPU)
    on_gpu = Accel.from_settings(settings, torch.device("cuda"))  # resolving only: nothing runs on it
    assert (on_cpu.precision, on_cpu.channels_last) == ("fp32", False)
    assert (on_gpu.precision, on_gpu.channels_last) == ("bf16", True)
    # YAML reads on/off as booleans
    assert load_settings("demo", {"channels_last": True, "compile": False}).channels_last == "on"


def test_compile_ops_compiles_each_candidate_op_in_place(monkeypatch):
    """The wiring (not the compiler: 'eager' backend): every non-trivial op compiled, names and outputs unchanged."""
    monkeypatch.setattr(accel_mod, "COMPILE_BACKEND", "eager")
    supernet, _ = tiny_supernet()
    reference, _ = tiny_supernet()
    keys = list(supernet.state_dict())
    Accel(CPU, compile="ops").prepare(supernet, supernet.candidate_ops())
    compiled = [op for op in supernet.candidate_ops() if getattr(op, "_compiled_call_impl", None) is not None]
    trivial = [op for op in supernet.candidate_ops() if type(op).__name__ in accel_mod.NOT_COMPILED]
    assert compiled and len(compiled) + len(trivial) == len(supernet.candidate_ops())
    assert list(supernet.state_dict()) == keys  # checkpoints do not depend on compilation
    x = torch.randn(4, 3, 16, 16)
    uniform = {label: torch.full((8,), 1 / 8) for label in supernet.edges}
    supernet.set_mixed(uniform)
    reference.set_mixed(uniform)
    assert torch.allclose(supernet(x), reference(x), atol=1e-5)


def test_non_finite_watch_keeps_the_first_bad_step_without_syncing_each_step():
    watch = NonFiniteWatch(CPU)
    watch.observe(torch.tensor(2.0), 0)
    assert watch.first() is None
    watch.observe(torch.tensor(math.inf), 3)
    watch.observe(torch.tensor(math.nan), 4)
    assert watch.first() == (3, math.inf)
