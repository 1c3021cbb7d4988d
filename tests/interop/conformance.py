"""Runs the official MCP conformance suite against the fixture directly and through moat.

    python conformance.py [--moat PATH] [--out DIR]

1. Starts fixtures/conformance_server.py over Streamable HTTP on a free port and runs every
   server scenario that the 2025-11-25 and 2026-07-28 requirement sets name against it
   directly: the fixture must pass all of them (else the fixture, not moat, is broken).
2. Starts `moat serve` with the fixture as two upstreams, `conformance` (Streamable HTTP)
   and `conformance-stdio` (the same fixture over stdio), both with `allow_anonymous = true`
   because the suite cannot send an Authorization header, and runs the same requirement
   sets against http://127.0.0.1:PORT/mcp/conformance and /mcp/conformance-stdio.
3. Fails when a scored scenario fails through moat and is not listed in
   conformance-expected-failures.txt, or when moat passes fewer scored scenarios than the
   fixture does directly. Scenarios the suite runs but does not score (extensions, pending
   ones) are reported only.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    FIXTURES,
    INTEROP,
    NODE22,
    PYTHON,
    Proc,
    free_port,
    moat_bin,
    moat_init,
    moat_serve,
    toml_array,
    wait_for_port,
)
from harness import toml_string as q

CLI = INTEROP / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
REVISIONS = ("2025-11-25", "2026-07-28")
EXPECTED = INTEROP / "conformance-expected-failures.txt"
SCENARIO_TIMEOUT_MS = 20000


@dataclass
class Outcome:
    """One run of one requirement set against one URL."""

    label: str
    revision: str
    scored: dict[str, bool] = field(default_factory=dict)
    unscored: dict[str, bool] = field(default_factory=dict)
    checks: dict[str, tuple[int, int]] = field(default_factory=dict)
    output: Path | None = None

    @property
    def passed(self) -> set[str]:
        return {name for name, ok in self.scored.items() if ok}

    @property
    def failed(self) -> set[str]:
        return {name for name, ok in self.scored.items() if not ok}


SUMMARY_LINE = re.compile(r"^([✓✗])\s+(\S+):\s+(\d+) passed,\s+(\d+) failed")
UNSCORED_LINE = re.compile(r"^\s+([✓✗])\s+(\S+)\s+\(")


def parse(label: str, revision: str, text: str, output: Path) -> Outcome:
    if "=== SUMMARY ===" not in text:
        raise RuntimeError(f"conformance CLI printed no summary for {label} {revision}; see {output}")
    outcome = Outcome(label, revision, output=output)
    summary = text.split("=== SUMMARY ===", 1)[1]
    head, _, tail = summary.partition("Not scored for")
    results: dict[str, bool] = {}
    for line in head.splitlines():
        found = SUMMARY_LINE.match(line.strip())
        if found:
            mark, name, passed, failed = found.groups()
            results[name] = mark == "✓" and int(failed) == 0
            outcome.checks[name] = (int(passed), int(failed))
    unscored = {found.group(2) for line in tail.splitlines() if (found := UNSCORED_LINE.match(line))}
    for name, ok in results.items():
        (outcome.unscored if name in unscored else outcome.scored)[name] = ok
    if not outcome.scored:
        raise RuntimeError(f"no scored scenario found in the conformance output for {label} {revision}; see {output}")
    return outcome


def run_suite(label: str, url: str, revision: str, out_dir: Path) -> Outcome:
    output = out_dir / f"{label}-{revision}.txt"
    command = [
        str(NODE22),
        str(CLI),
        "server",
        "--url",
        url,
        "--requirements",
        revision,
        "--timeout",
        str(SCENARIO_TIMEOUT_MS),
        "-o",
        str(out_dir / f"{label}-{revision}"),
    ]
    with output.open("w") as sink:
        done = subprocess.run(
            command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=1800, cwd=out_dir
        )
    text = output.read_text(errors="replace")
    if done.returncode not in (0, 1):
        raise RuntimeError(f"conformance CLI exited {done.returncode} for {label} {revision}; see {output}")
    return parse(label, revision, text, output)


def read_expected() -> dict[str, str]:
    """Scenario (optionally `revision:scenario`) -> reason, from conformance-expected-failures.txt."""
    expected: dict[str, str] = {}
    if not EXPECTED.exists():
        return expected
    for raw in EXPECTED.read_text().splitlines():
        entry, _, reason = raw.partition("#")
        entry = entry.strip()
        if entry:
            expected[entry] = reason.strip()
    return expected


def is_expected(expected: dict[str, str], revision: str, scenario: str) -> bool:
    return scenario in expected or f"{revision}:{scenario}" in expected


def report(outcome: Outcome) -> str:
    passed_checks = sum(p for p, _ in outcome.checks.values())
    failed_checks = sum(f for _, f in outcome.checks.values())
    line = (
        f"{outcome.label:<18} {outcome.revision}: {len(outcome.passed)}/{len(outcome.scored)} scored scenarios pass"
        f" ({passed_checks} checks passed, {failed_checks} failed)"
    )
    if outcome.failed:
        line += f"\n{'':<18} failing: {', '.join(sorted(outcome.failed))}"
    unscored_failed = sorted(name for name, ok in outcome.unscored.items() if not ok)
    if unscored_failed:
        line += f"\n{'':<18} not scored, failing: {', '.join(unscored_failed)}"
    return line


def failed_checks(outcome: Outcome, scenario: str) -> list[str]:
    """The failed checks of one scenario, from the CLI's -o output, one line each."""
    if outcome.output is None:
        return []
    lines = []
    for checks in sorted(outcome.output.with_suffix("").glob(f"server-{scenario}-2*/checks.json")):
        try:
            entries = json.loads(checks.read_text())
        except (OSError, ValueError):
            continue
        for entry in entries:
            if entry.get("status") == "FAILURE":
                message = " ".join(str(entry.get("errorMessage", "")).split())[:400]
                lines.append(f"{entry.get('id')}: {message}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moat", type=Path, default=None, help="the moat binary (default: as the pytest suite)")
    parser.add_argument("--out", type=Path, default=None, help="keep the CLI output here (default: a temp dir)")
    args = parser.parse_args()

    binary = (args.moat or moat_bin()).resolve()
    if not binary.is_file():
        print(f"conformance: moat binary not found at {binary}", file=sys.stderr)
        return 1
    for needed in (NODE22, CLI):
        if not needed.exists():
            print(f"conformance: {needed} is missing: run tests/interop/setup.sh", file=sys.stderr)
            return 1

    work = Path(tempfile.mkdtemp(prefix="moat-conformance-"))
    out_dir = (args.out or work / "results").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    outcomes: list[Outcome] = []
    try:
        port = free_port()
        fixture = Proc.start(
            "fixture", [str(PYTHON), str(FIXTURES / "conformance_server.py"), "http", str(port)], work / "fixture.log"
        )
        procs.append(fixture)
        wait_for_port(fixture, port)

        direct = {rev: run_suite("direct", f"http://127.0.0.1:{port}/mcp", rev, out_dir) for rev in REVISIONS}
        outcomes.extend(direct.values())

        data_dir = work / "data"
        moat_init(binary, data_dir)
        stdio = toml_array([str(PYTHON), str(FIXTURES / "conformance_server.py"), "stdio"])
        config = work / "moat.toml"
        config.write_text(
            f"""
[[servers]]
name = "conformance"
tenant = "default"
transport = "streamable-http"
url = {q(f"http://127.0.0.1:{port}/mcp")}
allow_anonymous = true

[[servers]]
name = "conformance-stdio"
tenant = "default"
transport = "stdio"
command = {stdio}
allow_anonymous = true
"""
        )
        gateway, base = moat_serve(binary, data_dir, config, work)
        procs.insert(0, gateway)

        through = {}
        for server in ("conformance", "conformance-stdio"):
            label = "moat-http" if server == "conformance" else "moat-stdio"
            for rev in REVISIONS:
                through[(label, rev)] = run_suite(label, f"{base}/mcp/{server}", rev, out_dir)
        outcomes.extend(through.values())
    finally:
        for proc in procs:
            proc.stop()

    print("\n=== MCP conformance (server scenarios required by each revision) ===")
    for outcome in outcomes:
        print(report(outcome))

    expected = read_expected()
    problems: list[str] = []
    for rev, outcome in direct.items():
        if outcome.failed:
            problems.append(
                f"the fixture fails {rev} scenarios directly: {sorted(outcome.failed)} (fix the fixture first)"
            )
    for (label, rev), outcome in through.items():
        unexpected = sorted(name for name in outcome.failed if not is_expected(expected, rev, name))
        if unexpected:
            problems.append(f"{label} {rev}: unexpected failures through moat: {unexpected} (output: {outcome.output})")
            for name in unexpected:
                problems.extend(f"    {name} / {line}" for line in failed_checks(outcome, name)[:6])
        if len(outcome.passed) < len(direct[rev].passed):
            lost = sorted(direct[rev].passed - outcome.passed)
            problems.append(
                f"{label} {rev}: moat scores lower than the fixture directly "
                f"({len(outcome.passed)} < {len(direct[rev].passed)}; lost {lost})"
            )
        healed = sorted(name for name in outcome.passed if is_expected(expected, rev, name))
        if healed:
            print(f"note: {label} {rev} now passes {healed}: remove them from {EXPECTED.name}")

    print(f"conformance output: {out_dir}")
    if problems:
        print("\nconformance FAILED:\n  " + "\n  ".join(problems))
        return 1
    total = sum(len(o.passed) for o in through.values())
    print(f"\nconformance: {total} passed, 0 failed")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
