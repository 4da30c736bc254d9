#!/usr/bin/env python
"""Headless-chromium check of NNI's web UI for an nni-offpolicy search experiment.

    python scripts/webui_check.py                  # start a tiny 2-trial search experiment, check it, stop it
    python scripts/webui_check.py --experiment ID  # check an experiment that is running (nnictl's registry)
    python scripts/webui_check.py --port 8080      # check whatever manager listens there

What it checks, through the DevTools protocol (chromium --remote-debugging-port, driven with ``websockets``):

1. Overview page (/oview): every SUCCEEDED trial and its final ``default`` metric (as the UI formats it) show.
2. Trials detail page (/detail) with the final result's ``genotype``/``params_m``/``derived_valid_acc`` columns
   switched on (the same localStorage key "Add/Remove columns" writes): each trial's ``<metric> (FINAL)`` and
   its genotype JSON are in the table.
3. One trial's row expanded: the Parameters tab shows the tuner's parameters.
4. The trial log the UI's "View trial log" opens (``trial-file/<id>/trial.log``) has the final result.
5. The TensorBoard button's backend (``POST /api/v1/nni/tensorboard``): TensorBoard starts on the trial's
   ``<exp>/trials/<id>/output/tensorboard`` and lists its runs; a screenshot of TensorBoard too.

Screenshots go to --out (default runs/webui-check/). Exit code 0 when every check passed, 1 otherwise.
Needs ``chromium`` (Debian: ``apt-get install -y chromium``).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nni_offpolicy.nni_glue.harmless import nnictl_env  # noqa: E402
from nni_offpolicy.nni_glue.rest import NniRest, find_running  # noqa: E402
from nni_offpolicy.nni_glue.store import decode_metric, decode_parameters  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1600,1000", "--remote-debugging-port=0",
                  "--remote-allow-origins=*"]
SMOKE_SEARCH = REPO / "experiments" / "smoke_search.yml"  # a seconds-long search settings file
T0 = time.time()


def say(message: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {message}", flush=True)


def format_accuracy(value: float) -> str:
    """The web UI's formatAccuracy: 6 decimals, trailing zeros dropped."""
    return re.sub(r"\.$", "", re.sub(r"0+$", "", f"{value:.6f}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------- experiment
class TinyExperiment:
    """A 2-trial tiny search experiment in a temporary directory with a private $HOME (nnictl's registry)."""

    def __init__(self, workdir: Path) -> None:
        import yaml

        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "webui.yml"
        self.config.write_text(yaml.safe_dump({
            "experimentName": "webui check",
            "searchSpace": {"behaviour": {"_type": "choice", "_value": ["uniform", "egreedy"]},
                            "epsilon": {"_type": "choice", "_value": [0.2]}},
            "trialCommand": f"{sys.executable} -m nni_offpolicy.cli trial search --preset demo --config {SMOKE_SEARCH}",
            "trialCodeDirectory": str(REPO), "trialConcurrency": 2, "maxTrialNumber": 2,
            "tuner": {"name": "GridSearch"}, "trainingService": {"platform": "local"},
            "experimentWorkingDirectory": str(workdir / "nni-experiments")}, sort_keys=False))
        self.id: str | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
        env.update(HOME=str(self.home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                   OMP_NUM_THREADS="1", MPLCONFIGDIR=os.environ.get("MPLCONFIGDIR")
                   or str(Path.home() / ".cache" / "matplotlib"))
        return env

    def nnictl(self, *args: str) -> subprocess.CompletedProcess:
        nnictl = Path(sys.executable).parent / "nnictl"
        return subprocess.run([str(nnictl), *args], env=nnictl_env(self.env), cwd=REPO, capture_output=True, text=True,
                              timeout=180)

    def start(self) -> None:
        proc = self.nnictl("create", "--config", str(self.config), "--port", str(self.port))
        match = re.search(r"Experiment ID: (?:\x1b\[\d+m)?([A-Za-z0-9_-]+)", proc.stdout + proc.stderr)
        if proc.returncode != 0 or not match:
            raise SystemExit(f"nnictl create failed:\n{proc.stdout}\n{proc.stderr}")
        self.id = match.group(1)

    def stop(self) -> None:
        if self.id:
            self.nnictl("stop", self.id)


def wait_for_trials(rest: NniRest, timeout: float) -> list[dict]:
    deadline = time.time() + timeout
    while True:
        status = rest.check_status().get("status")
        jobs = rest.trial_jobs()
        if status in ("DONE", "STOPPED", "ERROR") or (
                jobs and status == "NO_MORE_TRIAL" and all(j["status"] not in ("WAITING", "RUNNING") for j in jobs)):
            return jobs
        if time.time() > deadline:
            raise SystemExit(f"trials not done after {timeout} s: {[(j['trialJobId'], j['status']) for j in jobs]}")
        time.sleep(1)


# ------------------------------------------------------------------------------------------- DevTools
class Browser:
    """chromium --headless with the DevTools protocol over one page's websocket."""

    def __init__(self, chromium: str, profile: Path) -> None:
        self.proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"chromium did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        self.devtools_port = int(port_file.read_text().split()[0])
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.devtools_port}/json/list", timeout=10))
        self.ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
        self.ws: Any = None
        self._id = 0
        self.errors: list[str] = []  # uncaught page exceptions and console errors, for the report

    async def connect(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.ws_url, max_size=64 * 1024 * 1024)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1,
                        mobile=False)

    async def call(self, method: str, **params: Any) -> dict:
        self._id += 1
        my_id = self._id
        await self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=60))
            if message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.errors.append((details.get("exception") or {}).get("description") or details.get("text", ""))
            elif message.get("method") == "Runtime.consoleAPICalled" and message["params"].get("type") == "error":
                self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                            for a in message["params"].get("args", [])))
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def wait_text(self, needles: list[str], timeout: float = 30.0) -> str:
        """Poll document.body.textContent until every needle is in it; return the text."""
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            text = await self.evaluate("document.body ? document.body.textContent : ''") or ""
            if all(n in text for n in needles):
                return text
            await asyncio.sleep(0.25)
        missing = [n for n in needles if n not in text]
        raise TimeoutError(f"not on the page after {timeout} s: {missing}")

    async def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize")
            params["clip"] = {"x": 0, "y": 0, "width": max(1600, size["width"]),
                              "height": min(max(1000, size["height"]), 4000), "scale": 1}
            params["captureBeyondViewport"] = True
        data = await self.call("Page.captureScreenshot", **params)
        path.write_bytes(base64.b64decode(data["data"]))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------- checks
class Checks:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def record(self, name: str, ok: bool, detail: str = "") -> None:
        self.results.append((name, ok, detail))
        say(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.results)


async def check_ui(rest: NniRest, port: int, jobs: list[dict], out: Path, chromium: str, tensorboard: bool,
                   checks: Checks) -> None:
    base = f"http://127.0.0.1:{port}"
    exp_id = rest.experiment()["id"]
    done = [j for j in jobs if j["status"] == "SUCCEEDED" and j.get("finalMetricData")]
    if not done:
        checks.record("a SUCCEEDED trial with a final result exists", False, str([j["status"] for j in jobs]))
        return
    finals = {j["trialJobId"]: decode_metric(j["finalMetricData"][0]["data"]) for j in done}
    for trial_id, final in finals.items():
        say(f"trial {trial_id}: final default {final['default']:.6f}, genotype {final.get('genotype', '')[:70]}...")

    profile = Path(tempfile.mkdtemp(prefix="webui-chromium-"))
    browser = Browser(chromium, profile)
    say(f"chromium up (DevTools port {browser.devtools_port})")
    try:
        await browser.connect()

        # 1. overview
        t = time.time()
        await browser.goto(f"{base}/oview")
        needles = [format_accuracy(f["default"]) for f in finals.values()] + [exp_id, "Succeeded"]
        try:
            text = await browser.wait_text(needles, timeout=45)
            checks.record("overview shows every final default metric", True,
                          f"{[format_accuracy(f['default']) for f in finals.values()]} in {time.time() - t:.1f}s")
        except TimeoutError as exc:
            text = ""
            checks.record("overview shows every final default metric", False, str(exc))
        await asyncio.sleep(1.0)  # let the charts finish their animation
        await browser.screenshot(out / "overview.png")
        best = re.search(r"Best metric", text)
        say(f"overview text: {' '.join(text.split())[:400]}" if best else "overview text missing 'Best metric'")

        # 2. trials detail with the final result's columns switched on
        columns = ["sequenceId", "id", "duration", "status", "latestAccuracy", "metric/derived_valid_acc",
                   "metric/params_m", "metric/genotype"]
        # the format of the web UI's Storage class (static/model/localStorage.ts), as "Add/Remove columns" saves it
        await browser.evaluate(
            f"localStorage.setItem({json.dumps(exp_id + '_columns')}, JSON.stringify({{value: "
            f"{json.dumps(json.dumps(columns))}, time: Date.now(), expire: 2592000000, isSelectall: false}}))")
        t = time.time()
        await browser.goto(f"{base}/detail")
        needles = [f"{format_accuracy(f['default'])} (FINAL)" for f in finals.values()]
        needles += [f.get("genotype", "<no genotype reported>") for f in finals.values()]
        try:
            text = await browser.wait_text(needles + ["genotype (metric)"], timeout=45)
            checks.record("trials detail shows '<default> (FINAL)' and the genotype of each trial", True,
                          f"in {time.time() - t:.1f}s")
        except TimeoutError as exc:
            text = await browser.evaluate("document.body.textContent") or ""
            checks.record("trials detail shows '<default> (FINAL)' and the genotype of each trial", False,
                          f"{exc}; page text: {' '.join(text.split())[:600]}")
        await asyncio.sleep(0.5)
        await browser.screenshot(out / "detail.png")
        rows = await browser.evaluate(
            "Array.from(document.querySelectorAll('.ms-DetailsRow')).map(r => r.innerText.replace(/\\s+/g, ' '))")
        for row in rows or []:
            say(f"detail row: {row[:300]}")

        # per-epoch curves: the "Intermediate result" tab draws one line per trial from the PERIODICAL metrics
        await browser.evaluate(
            "(() => { const tabs = Array.from(document.querySelectorAll('button[role=tab]'))"
            ".filter(b => b.innerText.includes('Intermediate result')); if (tabs.length) tabs[0].click(); })()")
        await asyncio.sleep(2.0)
        canvases = await browser.evaluate("document.querySelectorAll('canvas').length")
        counts = {j["trialJobId"]: len([m for m in rest.metric_data(j["trialJobId"]) if m["type"] == "PERIODICAL"])
                  for j in done}
        checks.record("'Intermediate result' tab draws the per-epoch curves", bool(canvases),
                      f"{canvases} chart canvas(es); intermediate results per trial: {counts}")
        await browser.screenshot(out / "intermediate.png", full_page=False)

        # 3. expand the first trial: Parameters tab
        first = done[0]
        _, params = decode_parameters(first["hyperParameters"][0])
        expanded = await browser.evaluate(
            "(() => { const icons = document.querySelectorAll('.ms-DetailsRow i[data-icon-name=\"ChevronRight\"]');"
            " if (!icons.length) return false; icons[0].click(); return true; })()")
        try:
            await browser.wait_text(["Parameters", "Copy as json", *params.keys()], timeout=20)
            panel = await browser.evaluate(
                "(() => { const e = document.querySelector('.openRow'); return e ? e.innerText : ''; })()")
            checks.record("expanded trial shows the parameters it was assigned", bool(expanded),
                          " ".join((panel or "").split())[:300])
        except TimeoutError as exc:
            checks.record("expanded trial shows the parameters it was assigned", False, str(exc))
        # the genotype cell is ellipsised at 250 px: hover it for the tooltip with the whole genotype
        box = await browser.evaluate(
            "(() => { const cells = Array.from(document.querySelectorAll('.ms-DetailsRow .ellipsis'))"
            ".filter(e => e.textContent.startsWith('{')); if (!cells.length) return null;"
            " const r = cells[0].getBoundingClientRect(); return [r.x + 20, r.y + r.height / 2]; })()")
        if box:
            await browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])
            await asyncio.sleep(1.5)
            tip = await browser.evaluate(
                "(() => { const t = document.querySelector('.ms-Tooltip'); return t ? t.innerText : ''; })()")
            checks.record("hovering the genotype cell shows the whole genotype",
                          (tip or "").strip() == finals[done[0]["trialJobId"]].get("genotype") or
                          (tip or "").strip() in [f.get("genotype") for f in finals.values()], (tip or "")[:120])
            await browser.screenshot(out / "detail-genotype-tooltip.png", full_page=False)
        # the Log tab: the buttons that open trial.log / stderr / stdout
        await browser.evaluate(
            "(() => { const tabs = Array.from(document.querySelectorAll('.openRow button[role=tab]'))"
            ".filter(b => b.innerText.includes('Log')); if (tabs.length) tabs[0].click(); })()")
        try:
            await browser.wait_text(["View trial log", "View trial error", "LogPath"], timeout=10)
            checks.record("expanded trial's Log tab offers 'View trial log'", True)
        except TimeoutError as exc:
            checks.record("expanded trial's Log tab offers 'View trial log'", False, str(exc))
        await browser.screenshot(out / "detail-expanded.png")

        # 4. what "View trial log" opens
        log_url = f"{base}/api/v1/nni/trial-file/{first['trialJobId']}/trial.log"
        log = urllib.request.urlopen(log_url, timeout=20).read().decode(errors="replace")
        checks.record("trial.log (View trial log) has the final result and genotype",
                      "final result for parameter_id" in log and "genotype" in log,
                      next((line for line in log.splitlines() if "final result" in line), "")[:200])

        # 5. TensorBoard button backend
        if tensorboard:
            await check_tensorboard(rest, base, first["trialJobId"], browser, out, checks)
    finally:
        await browser.close()
        browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


async def check_tensorboard(rest: NniRest, base: str, trial_id: str, browser: Browser, out: Path,
                            checks: Checks) -> None:
    t = time.time()
    request = urllib.request.Request(f"{base}/api/v1/nni/tensorboard", data=json.dumps({"trials": trial_id}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        task = json.load(urllib.request.urlopen(request, timeout=60))
    except urllib.error.HTTPError as exc:
        checks.record("TensorBoard task starts", False, exc.read().decode()[:300])
        return
    try:
        tb_port = int(task["port"])
        runs: list = []
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                runs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{tb_port}/data/runs", timeout=5))
                if runs:
                    break
            except OSError:
                pass
            await asyncio.sleep(1)
        checks.record("TensorBoard (web UI button) finds the trial's event files", bool(runs),
                      f"logdir {task.get('trialLogDirectoryList')}, {len(runs)} run(s) "
                      f"e.g. {runs[:3]} in {time.time() - t:.1f}s")
        if runs:
            await browser.goto(f"http://127.0.0.1:{tb_port}/#timeseries")
            try:
                await browser.wait_text(["TensorBoard", trial_id], timeout=30)
            except TimeoutError:
                pass
            await asyncio.sleep(3)  # let the first charts draw
            await browser.screenshot(out / "tensorboard.png", full_page=False)
    finally:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/nni/tensorboard/{task['id']}",
                                                          method="DELETE"), timeout=20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--experiment", metavar="ID", help="a running experiment (nnictl's registry)")
    where.add_argument("--port", type=int, help="a running NNI manager's port")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "webui-check", help="screenshots here")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                        help="chromium binary")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the trials")
    parser.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                        help="skip the TensorBoard check")
    parser.add_argument("--keep", action="store_true", help="leave a started experiment running")
    args = parser.parse_args(argv)
    if not args.chromium:
        raise SystemExit("chromium not found: apt-get install -y chromium (or give --chromium PATH)")
    args.out.mkdir(parents=True, exist_ok=True)

    started: TinyExperiment | None = None
    workdir: Path | None = None
    if args.port:
        rest = NniRest(args.port)
    elif args.experiment:
        found = find_running(args.experiment)
        if found is None:
            raise SystemExit(f"experiment {args.experiment} is not running (nnictl experiment list)")
        rest = found
    else:
        workdir = Path(tempfile.mkdtemp(prefix="webui-check-"))
        started = TinyExperiment(workdir)
        say("starting a tiny 2-trial search experiment")
        started.start()
        rest = NniRest(started.port)
        say(f"experiment {started.id} on port {started.port}, dir {workdir}")
    checks = Checks()
    try:
        jobs = wait_for_trials(rest, args.timeout)
        say(f"trials: {[(j['trialJobId'], j['status']) for j in jobs]}")
        t = time.time()
        asyncio.run(check_ui(rest, rest.port, jobs, args.out, args.chromium, args.tensorboard, checks))
        say(f"browser checks took {time.time() - t:.1f}s")
    finally:
        if started is not None and not args.keep:
            started.stop()
            say(f"stopped {started.id}")
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"screenshots: {', '.join(str(p) for p in sorted(args.out.glob('*.png')))}")
    say(f"{sum(ok for _, ok, _ in checks.results)}/{len(checks.results)} checks passed")
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
