"""A fork server for runs of the conformance suite: import once, then fork a fresh child per run.

Rules:

- The server (``python -m vfio_mig_cts.faults.forkserver``, started by ``ForkServer``) first has
  pytest collect ``suites`` once (``--collect-only``, no reports): every module a run imports (pytest
  and its plugins, the conftest plugin, the suites, the mock, Hypothesis) is then imported, and the
  ones pytest rewrites are rewritten as in any run. It then freezes what it holds (``gc.freeze``: the
  children's collections skip it and its memory stays shared) and waits for requests.
- Each run is a child forked from that state, which never ran a test: runs are independent of each
  other and of their order, as separate processes are. The child runs ``pytest.main(ARGS)`` in the
  project root, with stdin from /dev/null and stdout and stderr into the run's output file, in a
  process group of its own, and exits with pytest's exit code. It collects and configures as any
  run does (``--fault``, ``--kernel-profile``, ``-k``, ``-n`` ... apply as given).
- A run that outlives its timeout is killed with its process group and reported as timed out. When
  the client goes away (its end of the request pipe closes), the server kills the running child and
  exits.
- Requests and replies are JSON lines: ``{"args": [...], "output": PATH, "timeout": SECONDS}`` on the
  server's stdin, ``{"returncode": N}`` or ``{"timed_out": true}`` on its stdout. One run at a time
  per server.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WARM_UP = ("suites", "--collect-only", "-q", "-p", "no:cacheprovider", "--no-reports")
INTERNAL_ERROR = 3  # pytest's exit code for an internal error


class ForkServerError(RuntimeError):
    """The server died or answered nonsense."""


class RunTimeout(subprocess.TimeoutExpired):
    """A run outlived its timeout (and was killed)."""


def _child(args: list[str], output: str) -> None:
    """In the forked child: one pytest run, then exit with its code (never returns)."""
    code = INTERNAL_ERROR
    try:
        os.setpgid(0, 0)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        gc.enable()
        code = int(pytest.main(args))
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float, requests: IO[str]) -> dict[str, Any]:
    """The child's exit code, or kill it (and its group) on timeout or when the client is gone."""
    pidfd, client = os.pidfd_open(pid), requests.fileno()
    deadline = time.monotonic() + timeout
    reply: dict[str, Any] = {}
    try:
        while not reply:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([pidfd, client], [], [], max(left, 0.0))
            if pidfd in ready:
                _, status = os.waitpid(pid, 0)
                reply = {"returncode": os.waitstatus_to_exitcode(status)}
            elif client in ready or left <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                if client in ready:  # the client closed the pipe: nothing more to do
                    raise SystemExit(0)
                reply = {"timed_out": True}
    finally:
        os.close(pidfd)
    return reply


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Warm up, then one forked run per request line until the requests end."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        pytest.main(list(WARM_UP))
    for sig in (signal.SIGTERM, signal.SIGHUP):  # the warm-up run's handlers end runs, not the server
        signal.signal(sig, signal.SIG_DFL)
    gc.collect()
    gc.freeze()
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child([str(a) for a in request["args"]], str(request["output"]))
        replies.write(json.dumps(_wait(pid, float(request["timeout"]), requests)) + "\n")
        replies.flush()


class ForkServer:
    """The client side: starts the server on first use, one run per ``run()``, ``close()`` ends it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.log = Path(tempfile.gettempdir()) / f"vfio-cts-forkserver-{os.getpid()}.log"  # the server's stderr

    def _start(self) -> subprocess.Popen[str]:
        with self.log.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "vfio_mig_cts.faults.forkserver"], cwd=ROOT,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        self.proc = proc
        self._reply(proc)
        return proc

    def _reply(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            self.close()
            raise ForkServerError(f"the fork server ended: {self.log.read_text(errors='replace')[-3000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def run(self, args: list[str], output: Path, timeout: float) -> int:
        """``pytest ARGS`` in a fresh child; its exit code. Raises ``RunTimeout`` after ``timeout`` s."""
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps({"args": args, "output": str(output), "timeout": timeout}) + "\n")
            proc.stdin.flush()
            reply = self._reply(proc)
        except BaseException:  # interrupted (a test's timeout, Ctrl-C): the run in flight goes with the server
            self.close()
            raise
        if reply.get("timed_out"):
            raise RunTimeout(["pytest", *args], timeout, output=output.read_text(errors="replace"))
        return int(reply["returncode"])

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.log.unlink(missing_ok=True)


def main() -> int:
    replies = os.fdopen(os.dup(1), "w")  # the replies' own fd: nothing a run prints can reach it
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    serve(sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
