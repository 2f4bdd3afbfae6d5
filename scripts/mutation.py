"""`make mutation`: cosmic-ray on the modules that decide opens, each against the tests that cover it.

Each module is mutated in a copy of the work tree of its own (cosmic-ray writes every mutant into the file on
disk and puts the original back), so the checkout is never touched and two modules run side by side, one per
core, under `nice -n 19`. The tests are the SQLite pass without Redis, only the files listed for the module,
stopping at the first failure; a mutant whose tests run past the module's timeout counts as killed (it hung).

Every mutant of cosmic-ray's operators (the set below, docs/testing.md says why) is run: nothing is sampled.
A surviving mutant is *equivalent* when docs/testing.md lists it (module, original line, mutated line) with the
reason it changes nothing; the score is killed / (mutants - equivalent). The run fails when a module scores below
MUTATION_MIN_SCORE (90).

    .venv/bin/python scripts/mutation.py [--jobs 2] [--module locks/tokens.py ...] [--report DIR]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
DOC = ROOT / "docs" / "testing.md"

# The test suite's own secrets (as in the Makefile's TEST_ENV): never used outside tests.
TEST_ENV = {
    "SECRET_KEY": "test-only-secret-key",
    "FIELD_ENCRYPTION_KEYS": "dGVzdC1vbmx5LWZpZWxkLWtleS0wMDAwMDAwMDAwMDA=",
    "SALTO_KS_CLIENT_ID": "test-client",
    "SALTO_KS_CLIENT_SECRET": "test-client-secret",
    "DEBUG": "0",
}
PYTEST = (
    '-m pytest -m "not postgres and not e2e and not browser" -x -q --tb=line -p no:cacheprovider '
    # faker's and anyio's pytest plugins are unused here and cost about a second of start-up per mutant.
    "-p no:faker -p no:anyio"
)

OPENING_TESTS = "tests/integrations/opening/"
# Tests that bound the wall-clock time of a loop of real work: on a loaded machine under nice 19 they fail for no
# mutant at all, and would count mutants as killed for nothing. Their code (the in-process task loop) is not mutated.
DESELECTED = (OPENING_TESTS + "test_perform.py::test_in_process_the_task_waits_a_bounded_time_and_never_recurses",)
# The open path's edges first (fast, and they kill most mutants), then the flow and the fence.
OPEN_PATH_TESTS = tuple(
    OPENING_TESTS + name for name in ("test_edges.py", "test_confirming_edges.py", "test_perform.py", "test_fencing.py")
)


@dataclass(frozen=True)
class Module:
    path: str
    tests: tuple[str, ...]
    # Only these top-level names (classes, functions) are mutated; empty: the whole file.
    only: tuple[str, ...] = ()
    # The test database built from the models rather than by the migrations (a second less per mutant); only for
    # tests that need none of the migrations' data (the API's groups are one).
    migrations: bool = False


MODULES = (
    Module("locks/otp.py", ("tests/locks/test_otp.py",)),
    Module("integrations/policy.py", (OPENING_TESTS + "test_policy.py", OPENING_TESTS + "test_policy_edges.py")),
    Module("integrations/services/opening.py", OPEN_PATH_TESTS),
    Module("integrations/services/sending.py", OPEN_PATH_TESTS),
    Module(
        "integrations/services/confirming.py",
        (OPENING_TESTS + "test_confirming_edges.py", OPENING_TESTS + "test_perform.py"),
    ),
    Module(
        "integrations/models.py",
        (OPENING_TESTS + "test_transitions.py", OPENING_TESTS + "test_fencing.py"),
        only=("OpenRequestQuerySet", "_check"),
    ),
    Module("locks/classify.py", ("tests/locks/test_classify_table.py", "tests/locks/test_client.py")),
    Module("locks/tokens.py", ("tests/locks/test_tokens_edges.py", "tests/locks/test_tokens.py")),
    Module(
        "integrations/idempotency.py",
        ("tests/api/test_idempotency_edges.py", "tests/api/test_idempotency.py", "tests/foundation/test_migrations.py"),
        migrations=True,
    ),
)

# The operators: cosmic-ray's core set, with its binary and comparison replacements cut to the ones that keep
# the code meaningful (PIT's defaults: arithmetic to its counterpart, a bound moved or a condition negated).
# The others (`+` → `>>`, `<` → `is`, …) fail on their first line or repeat one kept here; docs/testing.md.
KEPT_BINARY = "Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Mul|Mod_Mul|Pow_Mul|BitOr_BitAnd|BitAnd_BitOr|BitXor_BitAnd"
KEPT_COMPARISON = "Lt_LtE|Lt_GtE|LtE_Lt|LtE_Gt|Gt_GtE|Gt_LtE|GtE_Gt|GtE_Lt|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is"
EXCLUDED_OPERATORS = (
    rf"core/ReplaceBinaryOperator_(?!({KEPT_BINARY})$)",
    rf"core/ReplaceComparisonOperator_(?!({KEPT_COMPARISON})$)",
)


@dataclass
class Mutant:
    job_id: str
    operator: str
    line: int
    original: str
    mutated: str
    outcome: str  # killed, survived, equivalent, incompetent, no-test
    timed_out: bool = False
    reason: str = ""


@dataclass
class ModuleResult:
    module: Module
    seconds: float = 0.0
    baseline_seconds: float = 0.0
    mutants: list[Mutant] = field(default_factory=list)
    outside: int = 0  # mutants of the file outside Module.only, not run
    error: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for m in self.mutants if m.outcome == outcome)

    @property
    def score(self) -> float:
        counted = len(self.mutants) - self.count("equivalent") - self.count("no-test")
        return 100.0 * self.count("killed") / counted if counted else 100.0


# --- the equivalent mutants, read from docs/testing.md ------------------------------------------------------


def normalise(code: str) -> str:
    return " ".join(code.split())


def equivalents(doc: Path = DOC) -> dict[tuple[str, str, str], str]:
    """(module, original line, mutated line) → reason, from the table under "## Equivalent mutants"."""
    table: dict[tuple[str, str, str], str] = {}
    in_section = False
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            in_section = line.strip() == "## Equivalent mutants"
            continue
        if not in_section or not line.startswith("| `"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) < 4:
            continue
        module, original, mutated, reason = (c.strip("`") for c in cells[:4])
        table[(module, normalise(original), normalise(mutated))] = reason
    return table


# --- one module -----------------------------------------------------------------------------------------


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (ROOT / name).is_file()]


def copy_tree(dest: Path) -> None:
    for name in tracked_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def line_ranges(source: Path, names: Iterable[str]) -> list[str]:
    wanted = set(names)
    tree = ast.parse(source.read_text())
    ranges = [
        f"{node.lineno}-{node.end_lineno}"
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name in wanted
    ]
    if len(ranges) != len(wanted):
        raise SystemExit(f"{source}: not all of {sorted(wanted)} found")
    return ranges


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def test_command(module: Module) -> str:
    deselect = "".join(f" --deselect {test}" for test in DESELECTED if test.split("::")[0] in module.tests)
    return f"{PYTHON} {PYTEST}{'' if module.migrations else ' --nomigrations'}{deselect} " + " ".join(module.tests)


def write_config(path: Path, module: Module, *, timeout: float, ranges: list[str]) -> None:
    lines = [
        "[cosmic-ray]",
        f"module-path = {toml_string(module.path)}",
        f"timeout = {timeout:.1f}",
        "excluded-modules = []",
        f"test-command = {toml_string(test_command(module))}",
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
        "[cosmic-ray.filters.operators-filter]",
        "exclude-operators = [" + ", ".join(toml_string(e) for e in EXCLUDED_OPERATORS) + "]",
    ]
    if ranges:
        lines += [
            "",
            "[cosmic-ray.filters.line-filter.lines]",
            f"{toml_string(module.path)} = [" + ", ".join(toml_string(r) for r in ranges) + "]",
        ]
    path.write_text("\n".join(lines) + "\n")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(TEST_ENV)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=environment(), text=True, capture_output=True, **kwargs)


def diff_lines(diff: str) -> tuple[str, str]:
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return normalise(" ".join(removed)), normalise(" ".join(added)) or "(removed)"


def slug(module: Module) -> str:
    return module.path.replace("/", "_").removesuffix(".py")


def prepare(module: Module, work: Path) -> None:
    """The module's own copy of the work tree as it is now (taken for every module before any runs)."""
    src = work / slug(module)
    copy_tree(src)
    run([str(PYTHON), "-m", "compileall", "-q", "."], src)
    # The mutated file is always compiled afresh (tests run with PYTHONDONTWRITEBYTECODE).
    for cached in (src / module.path).parent.glob(f"__pycache__/{Path(module.path).stem}.*.pyc"):
        cached.unlink()


def mutate_module(module: Module, work: Path, known: dict[tuple[str, str, str], str]) -> ModuleResult:
    result = ModuleResult(module)
    src = work / slug(module)
    bin_dir = PYTHON.parent
    # The tests without a mutant, twice at most: a loaded machine may fail a timing-sensitive test once, and a
    # module must not be dropped for that (a real failure fails both times, and is shown).
    for _ in range(2):
        started = time.monotonic()
        baseline = run(shlex.split(test_command(module)), src)
        result.baseline_seconds = time.monotonic() - started
        if baseline.returncode == 0:
            break
        print(f"  {module.path}: the tests failed without any mutant:\n{baseline.stdout[-2000:]}", flush=True)
    else:
        result.error = f"the tests fail without any mutant:\n{baseline.stdout[-3000:]}{baseline.stderr[-3000:]}"
        return result
    # A mutant that makes the tests hang (a loop that never ends, a poll that never sees its token) is killed.
    timeout = max(60.0, 4 * result.baseline_seconds)
    ranges = line_ranges(src / module.path, module.only) if module.only else []
    config, session = src / "mutation.toml", work / f"{slug(module)}.sqlite"
    write_config(config, module, timeout=timeout, ranges=ranges)

    steps = [
        [str(bin_dir / "cosmic-ray"), "init", str(config), str(session)],
        [str(bin_dir / "cr-filter-operators"), str(session), str(config)],
    ]
    if ranges:
        steps.append([str(bin_dir / "cr-filter-lines"), str(session), "--config", str(config)])
    steps.append(["nice", "-n", "19", str(bin_dir / "cosmic-ray"), "exec", str(config), str(session)])
    started = time.monotonic()
    for step in steps:
        done = run(step, src)
        if done.returncode != 0:
            result.error = f"{' '.join(step)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            return result
    result.seconds = time.monotonic() - started
    collect(result, session, known, (src / module.path).read_text())
    return result


ANNOTATION = "in an annotation, which `from __future__ import annotations` keeps a string that nothing evaluates"


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the annotations are, in a module whose annotations are never evaluated (else none)."""
    tree = ast.parse(source)
    lazy = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    if not lazy:
        return []
    nodes: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            nodes.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            nodes.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno or n.lineno, n.end_col_offset or 0)) for n in nodes]


KEYWORD_ONLY = (
    "the bare `*` that makes the parameters after it keyword-only, as `/`: the signature then also takes them by "
    "position, and every caller names them"
)


def keyword_only_marker(source_lines: list[str], operator: str, at: tuple[int, int]) -> bool:
    """Is the mutated `*` the keyword-only marker of a signature (not a multiplication or an unpacking)?"""
    row, col = at
    line = source_lines[row - 1] if 0 < row <= len(source_lines) else ""
    before = line[:col].rstrip()
    return (
        operator.startswith("ReplaceBinaryOperator_Mul_")
        and re.match(r"\*\s*(,|\)|$)", line[col:]) is not None
        and (before == "" or before.endswith((",", "(")))
    )


def collect(result: ModuleResult, session: Path, known: dict[tuple[str, str, str], str], source: str) -> None:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    annotations = annotation_spans(source)
    source_lines = source.splitlines()

    with use_db(str(session), mode=WorkDB.Mode.open) as db:
        done = db.completed_work_items
    for item, outcome in done:
        (spec,) = item.mutations
        operator = spec.operator_name.removeprefix("core/")
        if outcome.worker_outcome == WorkerOutcome.SKIPPED:
            if "line-filter" in (outcome.output or ""):
                result.outside += 1
            continue  # an operator left out of the set (see EXCLUDED_OPERATORS)
        original, mutated = diff_lines(outcome.diff or "")
        mutant = Mutant(item.job_id, operator, spec.start_pos[0], original, mutated, outcome="")
        if outcome.worker_outcome == WorkerOutcome.NO_TEST:
            mutant.outcome = "no-test"
        elif outcome.test_outcome == TestOutcome.KILLED:
            mutant.outcome = "killed"
            mutant.timed_out = outcome.output == "timeout"
        elif outcome.test_outcome == TestOutcome.SURVIVED:
            at = tuple(spec.start_pos)
            reason = known.get((result.module.path, original, mutated))
            if reason is None and any(low <= at < high for low, high in annotations):
                reason = ANNOTATION
            if reason is None and keyword_only_marker(source_lines, operator, (spec.start_pos[0], spec.start_pos[1])):
                reason = KEYWORD_ONLY
            mutant.outcome, mutant.reason = ("equivalent", reason) if reason else ("survived", "")
        else:
            mutant.outcome = "incompetent"
            mutant.reason = (outcome.output or "")[-500:]
        result.mutants.append(mutant)
    result.mutants.sort(key=lambda m: (m.line, m.operator, m.mutated))


# --- the report -----------------------------------------------------------------------------------------


def table(results: list[ModuleResult], total_seconds: float) -> str:
    rows = [
        "| module | mutants | killed | survived | equivalent | score | run time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.error:
            rows.append(f"| `{r.module.path}` | error | | | | | |")
            continue
        extra = []
        if r.count("incompetent"):
            extra.append(f"{r.count('incompetent')} incompetent")
        if r.outside:
            extra.append(f"{r.outside} outside {', '.join(r.module.only)} not run")
        timed_out = sum(1 for m in r.mutants if m.timed_out)
        killed = f"{r.count('killed')}" + (f" ({timed_out} by timeout)" if timed_out else "")
        note = f" ({'; '.join(extra)})" if extra else ""
        rows.append(
            f"| `{r.module.path}`{note} | {len(r.mutants)} | {killed} | {r.count('survived')} | "
            f"{r.count('equivalent')} | {r.score:.1f}% | {r.seconds:.0f} s |"
        )
    minutes, seconds = divmod(round(total_seconds), 60)
    rows.append(f"\nWall time {minutes} min {seconds} s.")
    return "\n".join(rows)


def survivors(results: list[ModuleResult]) -> str:
    lines = []
    for r in results:
        if r.error:
            lines.append(f"{r.module.path}: {r.error}")
        for m in r.mutants:
            if m.outcome in ("survived", "incompetent"):
                lines.append(
                    f"{r.module.path}:{m.line} {m.operator} [{m.outcome}]\n    - {m.original}\n    + {m.mutated}"
                )
    return "\n".join(lines)


def stale(results: list[ModuleResult], known: dict[tuple[str, str, str], str]) -> list[str]:
    """Listed as equivalent, but no surviving mutant matches any more (killed now, or the line changed)."""
    ran = {r.module.path for r in results if not r.error}
    used = {(r.module.path, m.original, m.mutated) for r in results for m in r.mutants if m.outcome == "equivalent"}
    return [f"{k[0]}: `{k[1]}` → `{k[2]}`" for k in known if k[0] in ran and k not in used]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="modules mutated at once (default 2)")
    parser.add_argument("--module", action="append", help="only this module (repeatable)")
    parser.add_argument("--report", type=Path, default=ROOT / "test-artifacts" / "mutation")
    parser.add_argument("--min-score", type=float, default=float(os.environ.get("MUTATION_MIN_SCORE", 90)))
    args = parser.parse_args(argv)

    modules = [m for m in MODULES if not args.module or m.path in args.module]
    if args.module and len(modules) != len(args.module):
        parser.error(f"unknown module among {args.module}; known: {[m.path for m in MODULES]}")
    known = equivalents()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ireserve-mutation-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        print(f"Mutating {len(modules)} module(s), {args.jobs} at a time, in {tmp}", flush=True)
        for module in modules:
            prepare(module, Path(tmp))

        def one(module: Module) -> ModuleResult:
            r = mutate_module(module, Path(tmp), known)
            status = r.error.splitlines()[0] if r.error else f"{len(r.mutants)} mutants, {r.score:.1f}%"
            print(f"  {module.path}: {status} ({r.seconds:.0f} s)", flush=True)
            return r

        # The biggest first, so the two workers finish together.
        by_size = sorted(modules, key=lambda m: -(ROOT / m.path).stat().st_size)
        done = {r.module.path: r for r in pool.map(one, by_size)}
        results = [done[m.path] for m in modules]
    total = time.monotonic() - started

    args.report.mkdir(parents=True, exist_ok=True)
    summary = table(results, total)
    (args.report / "summary.md").write_text(summary + "\n")
    (args.report / "survivors.txt").write_text(survivors(results) + "\n")
    (args.report / "mutants.json").write_text(
        json.dumps(
            {r.module.path: [m.__dict__ for m in r.mutants] for r in results},
            indent=1,
        )
    )
    print()
    print(summary)
    if text := survivors(results):
        print("\nSurvivors (not listed as equivalent in docs/testing.md):\n" + text)
    if old := stale(results, known):
        print("\nListed as equivalent in docs/testing.md but not a survivor of this run:\n  " + "\n  ".join(old))
    print(f"\nReport: {args.report}")
    failed = [r for r in results if r.error or r.score < args.min_score]
    if failed:
        print(f"Below {args.min_score:.0f}%: " + ", ".join(r.module.path for r in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
