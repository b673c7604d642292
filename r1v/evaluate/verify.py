"""Math answer equivalence (math-verify) under a hard time bound that holds in any thread.

    from r1v.evaluate.verify import MathVerifier
    verifier = MathVerifier(timeout=5)
    verifier("\\frac{1}{2}", "0.5").equal           # True
    verifier.many([(gold, pred), ...])               # several at once, one worker per core

math-verify bounds its own work with `signal.alarm`: whole seconds, main thread only, and a
SymPy call stuck in C code (a huge integer power) is not interrupted at all. Here every
comparison that needs SymPy runs in a worker process; the caller waits at most `timeout`
seconds, and a worker that overruns is killed and replaced. That bound holds in threads (TRL
reward functions, thread pools) and in worker processes alike. A replacement worker starts
in about half a second (importing SymPy), outside the caller's time bound. Workers die with
their parent (Linux) and have their address space capped (`R1V_VERIFY_MEMORY`, default 4 GiB),
so a comparison that explodes ends as a wrong answer, not a swapping machine.

Two cheap paths never leave the process: identical normalised strings, and two plain
integers or fractions (compared exactly). A decimal that differs goes to math-verify, which
accepts a value rounded to 6 places (0.333333 for 1/3) whatever the gold's notation.

Two vetoes fix math-verify false positives reported by users (`../shared/docs/scoring.md`):
real numbers must agree to a relative 1e-6 (it rounds to 6 decimal places, so 1/2^99 ==
1/2^98), and an identity such as `x = x` does not match a different equation merely because
both normalise to 0 = 0.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from r1v.errors import R1VError
from r1v.evaluate.answers import unwrap_text

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Verdict:
    equal: bool
    how: str  # exact | number | math-verify | veto:relative | veto:identity | timeout | empty | error:...


# ---------------------------------------------------------------- cheap paths (no SymPy)
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")


def normalise(s: str) -> str:
    """Whitespace, `$`, `\\!`, `\\left/\\right`, text wrappers and a final full stop removed."""
    s = unwrap_text(s)
    for junk in ("$", "\\!", "\\,", "\\;", "\\left", "\\right"):
        s = s.replace(junk, "")
    s = "".join(s.split())
    return s.rstrip(".")


def quick(gold: str, pred: str) -> Verdict | None:
    """A verdict without SymPy, or None when SymPy is needed."""
    g, p = normalise(gold), normalise(pred)
    if not p:
        return Verdict(False, "empty")
    if g == p:
        return Verdict(True, "exact")
    if _PLAIN_NUMBER.fullmatch(g) and _PLAIN_NUMBER.fullmatch(p):
        try:
            if Fraction(g) == Fraction(p):
                return Verdict(True, "number")
        except (ValueError, ZeroDivisionError):
            return Verdict(False, "number")
        if "." not in g + p:  # integers and fractions: exactly different
            return Verdict(False, "number")
        # a decimal may be a rounded value (0.333333 for 1/3): math-verify's rounding decides
    return None


# ---------------------------------------------------------------- the SymPy path (runs in a worker)
def _as_latex(s: str, boxed: bool) -> str:
    # A bare answer is boxed so math-verify's LaTeX extraction takes all of it; a whole
    # answer text (no \boxed{} in it) is given as is and math-verify finds the expression.
    return f"$\\boxed{{{s}}}$" if boxed else s


def check(gold: str, pred: str, pred_boxed: bool = True) -> Verdict:
    """parse + verify + vetoes, with no time bound: call it through MathVerifier."""
    import sympy
    from math_verify import parse, verify

    g = parse(_as_latex(gold, True), parsing_timeout=None)
    p = parse(_as_latex(pred, pred_boxed), parsing_timeout=None)
    if not g or not p:
        return Verdict(False, "math-verify")
    if not verify(g, p, timeout_seconds=None):
        return Verdict(False, "math-verify")
    g0, p0 = g[0], p[0]
    if isinstance(g0, sympy.Basic) and isinstance(p0, sympy.Basic):
        # math-verify rounds to 6 decimal places, so tiny numbers all look equal: compare
        # real numbers relatively instead.
        if g0.is_number and p0.is_number and g0.is_real and p0.is_real:
            try:
                a, b = float(g0), float(p0)
            except (OverflowError, TypeError):
                a = b = 0.0  # too large for a float: keep math-verify's verdict
            if not math.isclose(a, b, rel_tol=1e-6):
                return Verdict(False, "veto:relative")
        if isinstance(p0, sympy.Equality) and p0 != g0 and sympy.simplify(p0.lhs - p0.rhs) == 0:
            return Verdict(False, "veto:identity")
    return Verdict(True, "math-verify")


def _guard_worker(memory_bytes: int) -> None:
    """Die with the parent, and cap memory: a runaway comparison must not outlive the caller
    (it is busy in C and would never read the closed stdin) nor eat the machine."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if os.getppid() == 1:  # the parent is already gone
            os._exit(0)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    except (ImportError, ValueError, OSError):
        pass


def serve() -> None:
    """Worker loop: one JSON job per stdin line, one JSON verdict per stdout line."""
    _guard_worker(int(os.environ.get("R1V_VERIFY_MEMORY", 4 << 30)))
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for line in sys.stdin:
        try:
            verdict = check(*json.loads(line))
        except Exception as e:  # a parse error, MemoryError, ...: a wrong answer, never a crash
            verdict = Verdict(False, f"error:{type(e).__name__}")
        sys.stdout.write(json.dumps([verdict.equal, verdict.how]) + "\n")
        sys.stdout.flush()


class _Worker:
    """A `python -m r1v.evaluate.verify` process. A plain subprocess rather than
    multiprocessing: spawn and forkserver re-import the caller's main module, which breaks
    any user script without a `__main__` guard, and fork is unsafe in a threaded process."""

    def __init__(self):
        env = dict(os.environ)  # the child finds r1v wherever this process found it
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty worker never blocks
        self.proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, bufsize=0, env=env)
        self._buf = b""
        try:  # wait for its imports, outside any caller's time bound
            if self.ask(["1", "1", True], 120.0) is None:
                self.kill()
                raise R1VError("the math verifier did not start within 120 s")
        except (EOFError, OSError):
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
            raise R1VError("the math verifier could not start: " + (tail[0] if tail else "it exited")) from None

    def ask(self, job, timeout: float | None) -> Verdict | None:
        """The verdict, or None when `timeout` seconds pass first."""
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("verifier worker exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        equal, how = json.loads(line)
        return Verdict(equal, how)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            f.close()


class MathVerifier:
    """`verifier(gold, pred)` -> Verdict, never taking longer than `timeout` seconds of SymPy."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, workers: int = 1, cache_size: int = 100_000):
        if not (0 < timeout < 86_400):  # also refuses nan and inf
            raise R1VError(f"the verification timeout must be between 0 and 86400 seconds, got {timeout}")
        self.timeout, self.workers, self.cache_size = timeout, max(1, workers), cache_size
        self._slots: queue.Queue = queue.Queue()
        for _ in range(self.workers):
            self._slots.put(None)  # started on first use
        self._cache: dict = {}
        self._lock = threading.Lock()

    def __call__(self, gold: str, pred: str, pred_boxed: bool = True) -> Verdict:
        fast = quick(gold, pred)
        if fast is not None:
            return fast
        key = (gold, pred, pred_boxed)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        verdict = self._remote(key)
        if verdict.how == "timeout" or verdict.how.startswith("error:worker"):
            return verdict  # may pass on a less busy machine: not cached
        with self._lock:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = verdict
        return verdict

    def many(self, jobs) -> list[Verdict]:
        """Verdicts for [(gold, pred) or (gold, pred, pred_boxed)], in order, using every worker."""
        jobs = list(jobs)
        if self.workers == 1 or len(jobs) < 2:
            return [self(*j) for j in jobs]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(lambda j: self(*j), jobs))

    def _remote(self, job) -> Verdict:
        worker = self._slots.get()
        try:
            if worker is None or not worker.alive():
                worker = _Worker()
            verdict = worker.ask(list(job), self.timeout)
            if verdict is not None:
                return verdict
            worker.kill()  # overran: the only hard stop for SymPy stuck in C is the process
            worker = None
            return Verdict(False, "timeout")
        except (EOFError, OSError, BrokenPipeError):  # the worker died (e.g. out of memory)
            worker = None
            return Verdict(False, "error:worker-died")
        except BaseException:  # interrupted (Ctrl-C) with a reply in flight: the worker is out of step
            if worker is not None:
                worker.kill()
            worker = None
            raise
        finally:
            self._slots.put(worker)

    def close(self) -> None:
        for _ in range(self.workers):
            w = self._slots.get()
            if w is not None:
                w.kill()
        for _ in range(self.workers):
            self._slots.put(None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


if __name__ == "__main__":
    serve()
