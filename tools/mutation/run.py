"""Run the mutation tests of the rule modules and write the report (README, "Development").

    .venv/bin/python tools/mutation/run.py                      # every mutant, every module
    .venv/bin/python tools/mutation/run.py --module policy      # one module
    .venv/bin/python tools/mutation/run.py --sample 70 --seed 15   # the CI sample

Never touches the working tree: each worker process copies the package and the tests into its
own temporary directory, writes one mutant there at a time and runs that module's tests in a
forked child (the heavy third-party imports are done once, before the fork), so several helpers
and runs can share a checkout. Exit status 1 when a module (or the sample) scores below the
threshold of mutation/config.toml.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from mutants import Mutant, generate

ROOT = Path(__file__).resolve().parents[2]
#: Imported once per worker before forking, so a mutant pays only for the project's own modules.
_PRELOAD = (
    "pytest", "anyio", "trio", "hypothesis", "attrs", "httpx", "transitions",
    "starknet_py.hash.utils", "starknet_py.hash.selector", "nacl.secret", "Crypto.Cipher.AES",
    "Crypto.Hash.keccak", "fast_stark_crypto", "starlette.applications", "uvicorn",
)


@dataclass
class ModuleSpec:
    name: str
    path: str
    tests: list[str]


@dataclass
class Tally:
    generated: int = 0
    equivalent: int = 0
    killed: int = 0
    timeout: int = 0
    survived: list[Mutant] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return self.generated - self.equivalent

    @property
    def score(self) -> float:
        return 100.0 if self.scored == 0 else 100.0 * (self.killed + self.timeout) / self.scored


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def load_config(path: Path) -> dict[str, object]:
    with path.open("rb") as f:
        return tomllib.load(f)


def load_equivalents(path: Path) -> dict[str, str]:
    """``mutant-id  reason`` per line; ``#`` comments and blank lines ignored."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        ident, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{path}: {ident}: an equivalent mutant needs a one-line reason")
        found[ident] = reason.strip()
    return found


# -- worker side -------------------------------------------------------------------------------

_WORKDIR: Path | None = None


def _init_worker(copy: list[str]) -> None:
    global _WORKDIR
    sys.dont_write_bytecode = True  # a stale .pyc of a previous mutant must never be imported
    _WORKDIR = Path(tempfile.mkdtemp(prefix="chipi-mutation-"))
    atexit.register(shutil.rmtree, _WORKDIR, True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "*.egg-info")
    for name in copy:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, _WORKDIR / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, _WORKDIR / name)
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    for name in [m for m in sys.modules if m == "chipi_session" or m.startswith("chipi_session.")]:
        del sys.modules[name]  # never imported by the preload; kept safe if a dependency does


def _run_tests(tests: list[str], timeout: float | None) -> tuple[str, float]:
    """Fork; the child runs pytest on the worker's copy. Returns (outcome, seconds)."""
    assert _WORKDIR is not None
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            os.chdir(_WORKDIR)
            sys.path.insert(0, str(_WORKDIR))
            if not os.environ.get("MUTATION_DEBUG"):
                log = os.open(_WORKDIR / "last-run.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(log, 1)
                os.dup2(log, 2)
            import pytest

            # one file at a time: a mutant the first (targeted) file kills never pays for
            # collecting the others
            for test_file in tests:
                code = int(pytest.main([
                    "-q", "-x", "-p", "no:cacheprovider",
                    "-W", "ignore::pytest.PytestAssertRewriteWarning", test_file,
                ]))
                if code != 0:
                    break
        finally:
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        elapsed = time.monotonic() - started
        if done:
            break
        if timeout is not None and elapsed > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", elapsed
        time.sleep(0.02)
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == 0:
            return "survived", elapsed
        if code == 5:
            return "error: no tests ran", elapsed
        return "killed", elapsed
    return "killed", elapsed  # died on a signal: a crash is a detected change


def _baseline(path: str, tests: list[str]) -> tuple[str, float, str]:
    """The unmutated module's tests must pass; on failure, the tail of pytest's output."""
    assert _WORKDIR is not None
    shutil.copy2(ROOT / path, _WORKDIR / path)
    outcome, seconds = _run_tests(tests, None)
    log = (_WORKDIR / "last-run.log").read_text(errors="replace").splitlines()
    return outcome, seconds, "\n".join(log[-25:])


def _run_mutant(path: str, source: str, original: str, tests: list[str],
                timeout: float) -> tuple[str, float]:
    assert _WORKDIR is not None
    target = _WORKDIR / path
    target.write_text(source)
    try:
        return _run_tests(tests, timeout)
    finally:
        target.write_text(original)


# -- driver ------------------------------------------------------------------------------------


def _modules(config: dict[str, object], only: list[str]) -> tuple[list[ModuleSpec], list[str]]:
    specs, missing = [], []
    for entry in config["module"]:  # type: ignore[attr-defined]
        spec = ModuleSpec(entry["name"], entry["path"], list(entry["tests"]))
        if only and spec.name not in only:
            continue
        if not (ROOT / spec.path).exists():
            missing.append(spec.name)
            continue
        spec.tests = [t for t in spec.tests if (ROOT / t).exists()]
        specs.append(spec)
    return specs, missing


def _all_mutants(specs: Iterable[ModuleSpec]) -> dict[str, list[Mutant]]:
    return {s.name: list(generate(s.name, (ROOT / s.path).read_text())) for s in specs}


def _write_report(path: Path, tallies: dict[str, Tally], missing: list[str],
                  equivalents: dict[str, str], title: str, threshold: float) -> None:
    lines = [
        f"# Mutation report: {title}",
        "",
        "Generated by `tools/mutation/run.py` (see README, \"Development\"). Score = killed /",
        "(generated - equivalent); timeouts count as killed.",
        "",
        "| module | generated | killed | timeout | survived | equivalent | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, t in tallies.items():
        mark = "" if t.score >= threshold else " ❌"
        lines.append(
            f"| {name} | {t.generated} | {t.killed} | {t.timeout} | {len(t.survived)} "
            f"| {t.equivalent} | {t.score:.1f}%{mark} |"
        )
    for name in missing:
        lines.append(f"| {name} | (file not present: skipped) | | | | | |")
    survivors = [m for t in tallies.values() for m in t.survived]
    if survivors:
        lines += ["", "## Survivors", ""]
        lines += [f"- `{m.id}` line {m.line}: {m.description}" for m in survivors]
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _save_result(results: Path, spec: ModuleSpec, tally: Tally, source: str) -> None:
    results.mkdir(parents=True, exist_ok=True)
    record = {
        "module": spec.name,
        "path": spec.path,
        "source_sha1": _sha(source),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "tests": spec.tests,
        "generated": tally.generated,
        "equivalent": tally.equivalent,
        "killed": tally.killed,
        "timeout": tally.timeout,
        "survived": [[m.id, m.line, m.description] for m in tally.survived],
    }
    (results / f"{spec.name}.json").write_text(json.dumps(record, indent=1) + "\n")


def _write_full_report(path: Path, config: dict[str, object], results: Path,
                       threshold: float, equivalents: dict[str, str]) -> None:
    """Every configured module's last full run (mutation/results/), marked when the module's
    source changed since that run."""
    lines = [
        "# Mutation report",
        "",
        "Generated by `tools/mutation/run.py` from each module's last full run",
        "(`mutation/results/`; see README, \"Development\"). Score = (killed + timeout) /",
        "(generated - equivalent); equivalent mutants are listed with their reasons in",
        "`mutation/equivalents.txt`.",
        "",
        "| module | generated | killed | timeout | survived | equivalent | score | run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    survivors: list[str] = []
    for entry in config["module"]:  # type: ignore[attr-defined]
        name, source = entry["name"], ROOT / entry["path"]
        file = results / f"{name}.json"
        if not source.exists():
            lines.append(f"| {name} | (file not present: skipped) | | | | | | |")
            continue
        if not file.exists():
            lines.append(f"| {name} | (not run yet) | | | | | | |")
            continue
        r = json.loads(file.read_text())
        # a survivor listed as equivalent after its run counts as equivalent (reason on file)
        later = [x for x in r["survived"] if x[0] in equivalents]
        r["survived"] = [x for x in r["survived"] if x[0] not in equivalents]
        t = Tally(r["generated"], r["equivalent"] + len(later), r["killed"], r["timeout"])
        stale = "" if r["source_sha1"] == _sha(source.read_text()) else ", source changed since"
        score = 100.0 if t.scored == 0 else 100.0 * (t.killed + t.timeout) / t.scored
        mark = "" if score >= threshold else " ❌"
        lines.append(
            f"| {name} | {t.generated} | {t.killed} | {t.timeout} | {len(r['survived'])} "
            f"| {t.equivalent} | {score:.1f}%{mark} | {r['finished']}{stale} |"
        )
        survivors += [f"- `{i}` line {line}: {d}" for i, line, d in r["survived"]]
    if survivors:
        lines += ["", "## Survivors", "", *survivors]
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "mutation" / "config.toml"))
    parser.add_argument("--module", action="append", default=[], help="only this module")
    parser.add_argument("--sample", type=int, default=0, help="run N mutants chosen by --seed")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report", help="where to write the report (default: config's)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from mutation/results/ without running")
    args = parser.parse_args(argv)

    config = load_config(Path(args.config))
    threshold = float(config.get("threshold", 95.0))  # type: ignore[arg-type]
    equivalents = load_equivalents(ROOT / str(config["equivalents"]))
    specs, missing = _modules(config, args.module)
    by_module = _all_mutants(specs)
    every_id = {m.id for ms in by_module.values() for m in ms}
    for stale in sorted(set(equivalents) - every_id):
        if not args.module or stale.split(":")[0] in args.module:
            _out(f"warning: {stale} is listed as equivalent but no longer generated")

    if args.report_only:
        report = Path(args.report) if args.report else ROOT / str(config["report"])
        _write_full_report(report, config, ROOT / "mutation" / "results", threshold, equivalents)
        _out(report.read_text())
        return 0

    if args.list:
        for ms in by_module.values():
            for m in ms:
                tag = "  [equivalent]" if m.id in equivalents else ""
                _out(f"{m.id}  line {m.line}: {m.description}{tag}")
        return 0

    tallies = {s.name: Tally() for s in specs}
    for name, ms in by_module.items():
        tallies[name].generated = len(ms)
        tallies[name].equivalent = sum(m.id in equivalents for m in ms)
    todo = [m for ms in by_module.values() for m in ms if m.id not in equivalents]
    if args.sample:
        todo = sorted(todo, key=lambda m: m.id)
        todo = random.Random(args.seed).sample(todo, min(args.sample, len(todo)))
        for t in tallies.values():
            t.generated = t.equivalent = 0
        for m in todo:
            tallies[m.module].generated += 1

    spec_of = {s.name: s for s in specs}
    originals = {s.name: (ROOT / s.path).read_text() for s in specs}
    started = time.monotonic()
    ctx = get_context("fork")
    copy = list(config.get("copy", ["chipi_session", "tests", "pyproject.toml"]))  # type: ignore[call-overload]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx,
                             initializer=_init_worker, initargs=(copy,)) as pool:
        timeouts: dict[str, float] = {}
        baselines = [
            (s, pool.submit(_baseline, s.path, s.tests))
            for s in specs
            if any(m.module == s.name for m in todo)
        ]
        for s, baseline in baselines:
            outcome, seconds, tail = baseline.result()
            if outcome != "survived":
                _out(tail)
                _out(f"{s.name}: the unmutated tests fail ({outcome}); fix them first")
                return 2
            timeouts[s.name] = float(config["timeout_factor"]) * seconds + float(  # type: ignore[arg-type]
                config["timeout_slack"]  # type: ignore[arg-type]
            )
            _out(f"{s.name}: baseline {seconds:.1f}s over {len(s.tests)} test files")
        futures = [
            (m, pool.submit(_run_mutant, spec_of[m.module].path, m.source,
                            originals[m.module], spec_of[m.module].tests, timeouts[m.module]))
            for m in todo
        ]
        for i, (m, fut) in enumerate(futures, 1):
            outcome, seconds = fut.result()
            tally = tallies[m.module]
            if outcome == "killed":
                tally.killed += 1
            elif outcome == "timeout":
                tally.timeout += 1
            else:
                tally.survived.append(m)
                _out(f"[{i}/{len(todo)}] {outcome.upper()} {m.id} line {m.line}: "
                     f"{m.description}")
            if i % 25 == 0:
                _out(f"[{i}/{len(todo)}] {time.monotonic() - started:.0f}s")
    elapsed = time.monotonic() - started

    title = (f"sample of {len(todo)} (seed {args.seed})" if args.sample else "full run")
    report = Path(args.report) if args.report else ROOT / str(config["report"])
    if args.sample and not args.report:
        report = Path(tempfile.gettempdir()) / "chipi-mutation-sample.md"
    if args.sample:
        _write_report(report, tallies, missing, equivalents, title, threshold)
    else:  # each module's last full run is kept; the report shows every module's
        results = ROOT / "mutation" / "results"
        for s in specs:
            _save_result(results, s, tallies[s.name], originals[s.name])
        _write_full_report(report, config, results, threshold, equivalents)
    _out(f"\n{title}: {len(todo)} mutants in {elapsed:.0f}s; report: {report}")
    for name, t in tallies.items():
        _out(f"  {name:<12} generated {t.generated:4d}  killed {t.killed + t.timeout:4d}  "
             f"survived {len(t.survived):3d}  equivalent {t.equivalent:3d}  score {t.score:5.1f}%")
    if args.sample:
        total = Tally(generated=len(todo))
        total.killed = sum(t.killed + t.timeout for t in tallies.values())
        _out(f"  sample score {total.score:.1f}% (threshold {threshold}%)")
        return 0 if total.score >= threshold else 1
    return 0 if all(t.score >= threshold for t in tallies.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
