"""experiments/remote.yml end to end: a real NNI experiment on the ``remote`` training service, over SSH, against
a real OpenSSH server that this test starts on a free loopback port. No mocks.

The server is ``sshd -D -e -f CONFIG`` with its own config, host key and one authorized ed25519 client key, all
generated into tmp_path: key login only (no passwords), listening on 127.0.0.1 only, killed at the end.

The experiment config is experiments/remote.yml as checked in (tuner, search space, trial command, reuseMode, the
machine entries' keys) with only what a loopback CPU run has to change: the machine list becomes this machine
(host 127.0.0.1, the sshd's port, the current user, the generated key, ``pythonPath`` = the bin/ of the Python
running the tests), ``nniManagerIp`` 127.0.0.1, no GPUs, and the trial command is shrunk to a tiny search on the
embedded digits: 2 trials, one at a time.

Skipped only where ``sshd`` or ``ssh-keygen`` is missing (``.ci/run`` installs openssh-server and -client best
effort), or, like test_experiments, where nnictl is.
"""
from __future__ import annotations

import contextlib
import fnmatch
import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nni_offpolicy.nni_glue.rest import NniRest
from nni_offpolicy.nni_glue.store import decode_metric, decode_parameters
from nni_offpolicy.tools.export import decode_architecture
from test_nniignore import nniignore_patterns
from test_experiments import MPLCONFIGDIR, NNICTL, REPO, TINY_SEARCH, VENV_BIN, Experiment, free_port

# NNI's remote machines keep everything under <tempPath>/nni-experiments/<experiment id> (tempPath is /tmp on
# Linux, hard-coded in nni_node/training_service/remote_machine/shellExecutor.js).
REMOTE_ROOT = Path("/tmp/nni-experiments")


def _tool(name: str, *fallbacks: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((p for p in fallbacks if os.access(p, os.X_OK)), None)


SSHD = _tool("sshd", "/usr/sbin/sshd", "/usr/local/sbin/sshd")
SSH_KEYGEN = _tool("ssh-keygen", "/usr/bin/ssh-keygen")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not NNICTL.exists(), reason="nnictl is not installed next to this Python"),
    pytest.mark.skipif(SSHD is None, reason="OpenSSH server (sshd) is not installed: apt-get install openssh-server"),
    pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed: apt-get install openssh-client"),
]


# ------------------------------------------------------------------------------------------------ loopback sshd
def free_port_pair() -> int:
    """A loopback port P with P + 1 free as well: in remote mode the NNI manager also listens on P + 1 (the web
    socket its trial runners connect to)."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free pair of loopback ports")


class LoopbackSshd:
    """``sshd -D -e -f CONFIG`` on 127.0.0.1:<free port>, key login for the current user only."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.root.mkdir(mode=0o700)
        self.user = getpass.getuser()
        self.port = free_port()
        self.host_key = root / "ssh_host_ed25519_key"
        self.client_key = root / "id_ed25519"
        self.config = root / "sshd_config"
        self.log = root / "sshd.log"
        self.proc: subprocess.Popen | None = None
        for key, comment in ((self.host_key, "nni-offpolicy test host"), (self.client_key, "nni-offpolicy test")):
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True,
                           capture_output=True, timeout=60)
        authorized = root / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        # The session environment of the "remote" machine: its own $HOME (what the trials write there stays in
        # tmp_path) and one intra-op thread per trial (the tests share 2 cores).
        setenv = " ".join(f"{k}={v}" for k, v in env.items())
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            "PidFile none",
            f"AuthorizedKeysFile {authorized}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",  # root may log in, with a key only
            f"AllowUsers {self.user}",
            "UsePAM no",
            "StrictModes no",  # the keys live under /tmp (world-writable): sshd's ownership walk would refuse them
            "Subsystem sftp internal-sftp",  # NNI uploads over SFTP; no sftp-server binary path to get wrong
            "LogLevel VERBOSE",
            f"SetEnv {setenv}",
            "",
        ]))

    def start(self, timeout: float = 30) -> "LoopbackSshd":
        if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
            # Debian's sshd refuses to start as root without its privilege separation directory, which the init
            # system creates; containers and CI machines that never started the service lack it.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, f"sshd rejects its test config:\n{check.stderr}"
        log = open(self.log, "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"sshd exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        return self
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"sshd does not answer on 127.0.0.1:{self.port}:\n{self.log_text()}")
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def sshd(tmp_path):
    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    server = LoopbackSshd(tmp_path / "sshd", {
        "HOME": str(remote_home), "MPLCONFIGDIR": MPLCONFIGDIR, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1"})
    try:
        yield server.start()
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ experiment
def remote_config(server: LoopbackSshd) -> dict[str, Any]:
    """experiments/remote.yml with the loopback machine and a tiny CPU search; everything else as checked in."""
    source = REPO / "experiments" / "remote.yml"
    config = yaml.safe_load(source.read_text())
    service = config["trainingService"]
    assert service["platform"] == "remote" and service["machineList"], "remote.yml is not a remote experiment"

    # the machine: the checked-in entry with the loopback host's values (and no GPU keys: this run has no GPUs)
    machine = {**service["machineList"][0]}
    for key in ("gpuIndices", "maxTrialNumberPerGpu"):
        machine.pop(key, None)
    assert {"host", "user", "sshKeyFile", "pythonPath"} <= set(machine), machine
    machine.update(host="127.0.0.1", port=server.port, user=server.user, sshKeyFile=str(server.client_key),
                   pythonPath=str(VENV_BIN))
    service["machineList"] = [machine]
    config["nniManagerIp"] = "127.0.0.1"
    config.pop("trialGpuNumber", None)

    # relative paths in the yml are relative to it; the derived copy lives in tmp_path. The search space is the
    # checked-in one, except warmup_epochs: its 5/10/15 are for 25-epoch stages, a tiny stage has 1 epoch
    # (warmup_epochs must be in [0, epochs]).
    space = json.loads((source.parent / config.pop("searchSpaceFile")).read_text())
    assert "warmup_epochs" in space, sorted(space)
    space["warmup_epochs"] = {"_type": "choice", "_value": [0, 1]}
    config["searchSpace"] = space
    config["trialCodeDirectory"] = str((source.parent / config["trialCodeDirectory"]).resolve())

    # the same trial command, shrunk: the tiny demo-preset search of test_experiments on the embedded digits
    words = shlex.split(config["trialCommand"])
    assert words[:5] == ["python3", "-m", "nni_offpolicy.cli", "trial", "search"], config["trialCommand"]
    words[words.index("--preset") + 1] = "demo"
    for key, value in TINY_SEARCH.items():
        words += ["--set", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    config["trialCommand"] = shlex.join(words)
    config.update(trialConcurrency=1, maxTrialNumber=2, maxTrialDuration="10m")
    return config


class RemoteExperiment(Experiment):
    """An ``Experiment`` (test_experiments' nnictl harness) whose manager port P has P + 1 free too, and whose
    logs include what the "remote" machine keeps and the sshd log."""

    def __init__(self, home: Path, workdir: Path, config: dict[str, Any], name: str, server: LoopbackSshd):
        super().__init__(home, workdir, config, name)
        self.port = free_port_pair()
        self.rest = NniRest(self.port, timeout=20)
        self.server = server

    @property
    def remote_dir(self) -> Path:
        return REMOTE_ROOT / self.id

    def logs(self) -> str:
        parts = [super().logs()]
        if self.id is not None:
            for path in sorted(self.remote_dir.glob("envs/*/trialrunner_*")) + sorted(self.dir.glob("trials/*/*.log")):
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-4000:]}")
        parts.append(f"--- sshd\n{self.server.log_text()[-4000:]}")
        return "\n".join(parts)


@pytest.fixture
def remote_experiment(tmp_path, sshd):
    """experiments/remote.yml (derived, see remote_config) created with nnictl under a private $HOME; stopped by id
    at the end, and its directory on the "remote" machine removed."""
    home = tmp_path / "home"
    home.mkdir()
    made_root = not REMOTE_ROOT.exists()
    exp = RemoteExperiment(home, tmp_path / "nni-experiments", remote_config(sshd), "remote", sshd)
    try:
        yield exp.create()
    finally:
        exp.stop()
        if exp.id:
            for pid_file in exp.remote_dir.glob("envs/*/pid"):  # a trial runner NNI left behind: ours, end it
                pid = int(pid_file.read_text())
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(exp.remote_dir, ignore_errors=True)
        if made_root:
            with contextlib.suppress(OSError):  # only if empty: another remote experiment may use it
                REMOTE_ROOT.rmdir()


# ------------------------------------------------------------------------------------------------ test
def test_remote_yml_runs_over_ssh(remote_experiment):
    exp = remote_experiment
    space = exp.config["searchSpace"]
    jobs = exp.wait(trials=2, timeout=300)
    assert [j["status"] for j in jobs] == ["SUCCEEDED", "SUCCEEDED"], exp.logs()

    seen_ids = set()
    for job in jobs:
        trial = job["trialJobId"]
        own_id, params = decode_parameters(job["hyperParameters"][0])
        assert set(params) == set(space), params  # TPE sampled the checked-in search space
        rows = exp.rest.metric_data(trial)
        periodical = [r for r in rows if r["type"] == "PERIODICAL"]
        final = [r for r in rows if r["type"] == "FINAL"]
        assert len(periodical) == 2 and len(final) == 1, exp.logs()  # one per epoch: 2 stages of 1 epoch
        assert all(int(r["parameterId"]) == own_id for r in periodical + final)
        assert all(isinstance(decode_metric(r["data"])["default"], float) for r in periodical)
        value = decode_metric(final[0]["data"])
        assert isinstance(value["default"], float) and value["metric"] == "derived_reward"
        assert value["genotype"].startswith("Genotype(normal=[(")  # reported as its text, as test_experiments checks
        assert set(decode_architecture(value["genotype"])) >= {"normal", "reduce", "normal_concat", "reduce_concat"}
        seen_ids.add(own_id)

        # It ran the remote way: in NNI's remote layout on the SSH side (<tempPath>/nni-experiments/<id>/trials/
        # <trial>/{code,nnioutput}), from the uploaded code copy, with NNI_PLATFORM=remote; nothing ran locally.
        remote_trial = exp.remote_dir / "trials" / trial
        record = json.loads((remote_trial / "nnioutput" / "nni_parameters.json").read_text())
        assert (record["trial_id"], record["parameter_id"], record["parameters"]) == (trial, own_id, params)
        assert record["platform"] == "remote"
        assert record["package_dir"] == str(remote_trial / "code" / "nni_offpolicy")
        assert (remote_trial / "nnioutput" / "genotype.json").is_file()
        assert job["logPath"].startswith(f"file://127.0.0.1:{exp.remote_dir}/envs/"), job["logPath"]
        # the trial's log lines reach the trial runner's stdout on that machine
        runner_log = "".join(p.read_text() for p in exp.remote_dir.glob("envs/*/trialrunner_stdout"))
        assert f"trial {trial}: NNI platform remote, code {remote_trial / 'code' / 'nni_offpolicy'}" in runner_log
    assert seen_ids == {0, 1}
    assert not (exp.dir / "environments").exists()  # the local training service's layout

    # NNI logged in over our sshd with the generated key and uploaded through its SFTP subsystem
    log = exp.server.log_text()
    assert f"Accepted publickey for {exp.server.user} from 127.0.0.1" in log, log[-3000:]
    assert "subsystem 'sftp'" in log, log[-3000:]

    # the upload is trialCodeDirectory minus .nniignore (top level: see test_nniignore.py)
    with tarfile.open(exp.remote_dir / "envs" / "nni-code.tar.gz") as tar:
        members = tar.getnames()
    top = {(name[2:] if name.startswith("./") else name).split("/", 1)[0] for name in members} - {"", "."}
    assert {"nni_offpolicy", "search_spaces", "experiments", "setup.py"} <= top, sorted(top)
    # what .nniignore means to leave out of this checkout (.git is a directory in a clone, a file in a worktree;
    # .venv, runs/, build outputs where they exist, e.g. on CI)
    meant = {name for name in os.listdir(REPO) for pattern in nniignore_patterns()
             if fnmatch.fnmatch(name, pattern.rstrip("/"))}
    assert ".git" in meant or not (REPO / ".git").exists(), meant
    assert not (top & meant), f"uploaded although in .nniignore: {sorted(top & meant)}"
    assert len(members) < 2000, len(members)

    # nnictl stop ends the trial runner that NNI started over SSH
    runner_pids = [int(p.read_text()) for p in exp.remote_dir.glob("envs/*/pid")]
    assert runner_pids, exp.logs()
    exp.stop()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in runner_pids) and time.time() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in runner_pids if _alive(pid)], "trial runner still running after nnictl stop"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
