"""Child processes that end with their parent, and a small pool of them that stops as a whole.

Two promises (README, reliability): a grid stops as a whole, and workers die with their parent.

- ``die_with_parent`` makes a child end when its parent does, kill -9 included: ``prctl(PR_SET_PDEATHSIG,
  SIGKILL)`` on Linux, and everywhere a thread that polls ``os.getppid()`` (which also covers a parent that died
  before the ``prctl``). A killed search resumes from its last checkpoint (they are written atomically), so
  ending a worker at any point loses at most the epoch in progress.
- ``run_in_workers`` runs tasks ``jobs`` at a time in spawned processes (fresh interpreters: no forked torch
  thread pools), handing each worker its next task only when it is done, so nothing waits in a queue the parent
  cannot take back. Ctrl-C (SIGINT to the process group, or to the parent alone) gives no task out any more, ends
  the running ones (each worker's own KeyboardInterrupt; SIGINT, then SIGKILL, for one that does not stop) and
  raises KeyboardInterrupt within seconds. A task that fails lets the running ones finish, starts no new one and
  raises the failure.

Kept free of torch: the parent may be a light command.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
from typing import Any, Callable, Hashable, Sequence

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_POLL_S = 0.5  # how often the fallback checks the parent
_GRACE_S = 2.0  # after Ctrl-C: how long a worker may take to stop on its own SIGINT before it is sent one
_KILL_S = 5.0  # then how long before SIGKILL

Task = tuple[Hashable, Callable[..., Any], tuple]


def die_with_parent(parent_pid: int) -> None:
    """End this process (SIGKILL) as soon as ``parent_pid``, its parent, is gone, however it ended."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc to ask: the thread below still watches
            pass
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while True:
            time.sleep(_POLL_S)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (a UserError does), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _serve(conn: multiprocessing.connection.Connection, parent_pid: int) -> None:
    """A worker: run the tasks the parent hands it, one at a time, until it is told to stop (None or EOF). After
    a KeyboardInterrupt it says so and ends: an interrupted worker takes no more work."""
    die_with_parent(parent_pid)
    try:
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            fn, args = task
            try:
                reply: tuple[str, Any] = ("ok", fn(*args))
            except KeyboardInterrupt:
                conn.send(("interrupted", None))
                return
            except BaseException as exc:  # the task's failure, reported to the parent, which raises it
                reply = ("error", _sendable(exc))
            conn.send(reply)
    except (KeyboardInterrupt, BrokenPipeError, EOFError, OSError):
        return  # interrupted while idle, or the parent is gone: nothing to report, no traceback


class _Worker:
    def __init__(self, ctx: Any):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, os.getpid()), name="nni-offpolicy-worker")
        self.process.start()
        child.close()
        self.key: Hashable | None = None
        self.busy = False

    def give(self, key: Hashable, fn: Callable[..., Any], args: tuple) -> None:
        self.conn.send((fn, args))
        self.key, self.busy = key, True

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.conn.close()


def _stop(workers: Sequence[_Worker]) -> None:
    """End every worker: let a busy one stop on the SIGINT it may have had with the parent's, then SIGINT it,
    then SIGKILL it; idle ones are told to stop."""
    for w in workers:
        if not w.busy:
            w.close()
    deadline = time.monotonic() + _GRACE_S
    for w in workers:
        w.process.join(max(0.0, deadline - time.monotonic()))
    for w in workers:
        if w.process.is_alive():
            os.kill(w.process.pid, signal.SIGINT)
    deadline = time.monotonic() + _KILL_S
    for w in workers:
        w.process.join(max(0.0, deadline - time.monotonic()))
    for w in workers:
        if w.process.is_alive():
            w.process.kill()
            w.process.join()


def run_in_workers(tasks: Sequence[Task], jobs: int, on_result: Callable[[Hashable, Any], None]) -> None:
    """Run each ``(key, fn, args)`` as ``fn(*args)`` in one of ``min(jobs, len(tasks))`` spawned workers, in order,
    calling ``on_result(key, value)`` in this process as each ends. ``fn`` must be importable (module level)."""
    todo = list(tasks)
    if not todo:
        return
    ctx = multiprocessing.get_context("spawn")
    workers: list[_Worker] = []
    failure: BaseException | None = None
    try:
        for _ in range(min(jobs, len(todo))):
            workers.append(_Worker(ctx))
        for w in workers:
            key, fn, args = todo.pop(0)
            w.give(key, fn, args)
        while any(w.busy for w in workers):
            busy = [w for w in workers if w.busy]
            multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                if w.conn.poll():
                    try:
                        status, value = w.conn.recv()
                    except (EOFError, OSError):
                        status, value = "died", None
                elif not w.process.is_alive():
                    status, value = "died", None
                else:
                    continue
                key, w.busy = w.key, False
                if status == "interrupted":
                    raise KeyboardInterrupt
                if status == "died":
                    code = w.process.exitcode
                    how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit {code}"
                    value = ChildProcessError(f"the worker running {key} ended without a result ({how})")
                if status == "ok" and failure is None:
                    on_result(key, value)
                    if todo:
                        w.give(*todo.pop(0))
                elif status != "ok":
                    failure = failure or value
                    todo.clear()  # the running tasks finish (a search stays resumable); no new one starts
        if failure is not None:
            raise failure
    except BaseException:
        _stop(workers)
        raise
    finally:
        for w in workers:
            if w.process.is_alive() and not w.busy:
                w.close()
        for w in workers:
            w.process.join(_KILL_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
