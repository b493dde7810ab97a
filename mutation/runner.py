"""The mutation-testing runner: cosmic-ray over the reference mock, the conformance suite as the test.

Steps (each resumable; the session lives in the work dir, by default ~/.cache/vfio-mig-cts-mutation):

* ``init``: copy the project into ``workers`` private workspaces (cosmic-ray mutates files in place,
  and other people run the suite in the checkout meanwhile), enumerate the mutants with
  ``cosmic-ray init``, record as skipped those of operators outside the configured set and those
  inside quirk-only code (equivalent by construction, vfio_mig_cts/backends/mock/quirks.py knobs off).
* ``run``: start one ``cosmic-ray http-worker`` per workspace and ``cosmic-ray exec`` the pending
  mutants (an interrupted run continues where it stopped).
* ``report``: write mutation/results.md and mutation/survivors.json from the session.
* ``check``: re-run chosen mutants (by id; ``--survivors`` for all survivors) against the current
  checkout: the mutants are matched by their source text, so line shifts do not matter.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mutation import quirk_only
from vfio_mig_cts.errors import BadInput, Parser, one_line
from vfio_mig_cts.numbers import SECONDS, count

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "mutation"
CONFIG = HERE / "config.toml"
EQUIVALENT = HERE / "equivalent.md"
RESULTS = HERE / "results.md"
SURVIVORS = HERE / "survivors.json"
DEFAULT_WORKDIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vfio-mig-cts-mutation"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "reports", "*.egg-info", ".hypothesis",
                                     ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules")


@dataclass(frozen=True)
class Settings:
    modules: list[str]
    test_command: str
    timeout: float
    workers: int
    operators: frozenset[str]


def load_settings(path: Path = CONFIG) -> Settings:
    """mutation/config.toml, its numbers checked as the suite's (vfio_mig_cts/numbers.py); ``BadInput`` else."""
    try:
        raw = tomllib.loads(path.read_text())["mutation"]
        timeout = SECONDS.parse("timeout", raw["timeout"])
        workers = count(1, 64).parse("workers", raw["workers"])
        return Settings(modules=list(raw["modules"]),
                        test_command=raw["test-command"].format(python=sys.executable),
                        timeout=float(timeout), workers=int(workers), operators=frozenset(raw["operators"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # TOMLDecodeError and NumberError are ValueErrors
        raise BadInput(one_line(f"{path}: {exc}: fix the file (the keys are described in it)")) from None


@dataclass(frozen=True)
class Mutant:
    """One mutant of the session: its stable id and where it applies."""

    job_id: str
    module: str
    operator: str
    occurrence: int
    start: tuple[int, int]
    end: tuple[int, int]
    function: str | None

    @property
    def mid(self) -> str:
        """Stable within a snapshot: module stem, operator (without ``core/``), occurrence."""
        return f"{Path(self.module).stem}.{self.operator.removeprefix('core/')}.{self.occurrence}"


# --- the tool ---------------------------------------------------------------------------------------
def tool(workdir: Path) -> Path:
    """cosmic-ray's executable, installed on first use into its own venv (mutation/requirements.txt)."""
    venv = workdir / "venv"
    exe = venv / "bin" / "cosmic-ray"
    stamp = venv / ("installed-" + hashlib.sha256((HERE / "requirements.txt").read_bytes()).hexdigest()[:12])
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                        str(HERE / "requirements.txt")], check=True)
        stamp.touch()
    return exe


def cr_config(settings: Settings, path: Path, urls: list[str] | None = None, timeout: float | None = None) -> Path:
    lines = ["[cosmic-ray]",
             f"module-path = {json.dumps(settings.modules)}",
             f"timeout = {timeout or settings.timeout}",
             "excluded-modules = []",
             f"test-command = {json.dumps(settings.test_command)}",
             "", "[cosmic-ray.distributor]"]
    if urls:
        lines += ['name = "http"', "", "[cosmic-ray.distributor.http]", f"worker-urls = {json.dumps(urls)}"]
    else:
        lines += ['name = "local"']
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the session database (cosmic-ray's schema, read directly) ---------------------------------------
def mutants(db: Path) -> list[Mutant]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        rows = con.execute("select job_id, module_path, operator_name, occurrence, start_pos_row, start_pos_col, "
                           "end_pos_row, end_pos_col, definition_name from mutation_specs").fetchall()
    out = [Mutant(r[0], r[1], r[2], r[3], (r[4], r[5]), (r[6], r[7]), r[8]) for r in rows]
    return sorted(out, key=lambda m: (m.module, m.start, m.operator, m.occurrence))


def results(db: Path) -> dict[str, tuple[str, str | None, str | None, str | None]]:
    """job_id -> (worker_outcome, test_outcome, output, diff)."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        rows = con.execute("select job_id, worker_outcome, test_outcome, output, diff from work_results").fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def mark_skipped(db: Path, reasons: dict[str, str]) -> None:
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.executemany("insert or replace into work_results (worker_outcome, output, test_outcome, diff, job_id) "
                        "values ('SKIPPED', ?, NULL, NULL, ?)", [(r, j) for j, r in reasons.items()])


def classify(db: Path, workspace: Path, settings: Settings, reclassify: bool = False) -> Counter[str]:
    """Record as skipped the mutants outside the operator set and those in quirk-only code.

    ``reclassify``: also mutants already run (after the filter learnt a new pattern); the result
    they had is kept in the output column.
    """
    spans = {m: quirk_only.quirk_only_spans((workspace / m).read_text()) for m in settings.modules}
    done = results(db)
    reasons: dict[str, str] = {}
    for m in mutants(db):
        if m.job_id in done and (done[m.job_id][0].lower() == "skipped" or not reclassify):
            continue
        if m.operator not in settings.operators:
            reasons[m.job_id] = "skipped: operator not in the set"
        elif (why := quirk_only.reason_for(spans[m.module], (m.start, m.end), m.operator)) is not None:
            had = f"; ran: {outcome(done[m.job_id])}" if m.job_id in done else ""
            reasons[m.job_id] = f"equivalent by construction: quirk-only code ({why}){had}"
    mark_skipped(db, reasons)
    return Counter(r.split(":")[0] for r in reasons.values())


# --- workspaces and workers ------------------------------------------------------------------------
def snapshot(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    # the runner's own package (and this work dir if it sits inside the checkout) are no part of the test
    for extra in ("mutation",):
        shutil.rmtree(dest / extra, ignore_errors=True)


def register_parts(ws: Path) -> None:
    """In a check workspace only: register the rulebook's and faultbook's mutation.py if the checkout does not yet."""
    for pkg, attr in (("spec/rulebook", "RULES_PART"), ("faults/book", "FAULTS_PART")):
        init = ws / "vfio_mig_cts" / pkg / "__init__.py"
        text = init.read_text()
        dotted = "vfio_mig_cts." + pkg.replace("/", ".")
        if (ws / "vfio_mig_cts" / pkg / "mutation.py").exists() and "mutation" not in text:
            init.write_text(text + f"\nfrom {dotted} import mutation as _mutation_part  # (mutation check)\n"
                                   f"PARTS = (*PARTS, _mutation_part.{attr})\n")


def baseline(settings: Settings, ws: Path) -> None:
    """The unmutated workspace must pass the test command, or every mutant would count as killed."""
    proc = subprocess.run(settings.test_command.split(), cwd=ws, capture_output=True, text=True,
                          timeout=settings.timeout * 5, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"mutation: the unmutated suite fails in {ws}:\n{proc.stdout[-3000:]}")


def fingerprint(base: Path, modules: list[str]) -> str:
    h = hashlib.sha256()
    for m in modules:
        h.update((base / m).read_bytes())
    return h.hexdigest()[:16]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"http-worker on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"http-worker on port {port} did not start")


def exec_session(exe: Path, config: Path, db: Path, workspaces: list[Path], log: Path) -> None:
    """Run the pending mutants of ``db`` on one http worker per workspace."""
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    settings_text = config.read_text()
    try:
        with log.open("ab") as out:
            for ws in workspaces:
                port = free_port()
                procs.append(subprocess.Popen([str(exe), "http-worker", "--port", str(port)], cwd=ws,
                                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
                wait_port(port, procs[-1])
                urls.append(f"http://127.0.0.1:{port}")
            http_config = config.with_name(config.stem + "-http.toml")
            text = settings_text.split("[cosmic-ray.distributor]")[0]
            http_config.write_text(text + '[cosmic-ray.distributor]\nname = "http"\n\n[cosmic-ray.distributor.http]\n'
                                   f"worker-urls = {json.dumps(urls)}\n")
            subprocess.run([str(exe), "exec", str(http_config), str(db)], check=True, stdout=out,
                           stderr=subprocess.STDOUT)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 15)
            p.wait(timeout=30)


def progress(db: Path) -> Counter[str]:
    total = len(mutants(db))
    c: Counter[str] = Counter(outcome(r) for r in results(db).values())
    c["pending"] = total - sum(c.values())
    return c


def outcome(r: tuple[str, str | None, str | None, str | None]) -> str:
    worker, test, output, _ = r
    worker, test = worker.lower(), (test or "").lower()
    if worker == "skipped":
        return "equivalent-by-construction" if (output or "").startswith("equivalent") else "skipped-operator"
    if test == "killed":
        return "timeout" if output == "timeout" else "killed"
    if test == "survived":
        return "survived"
    return f"error-{worker}-{test}"


# --- commands --------------------------------------------------------------------------------------
def cmd_init(workdir: Path, settings: Settings, fresh: bool) -> Path:
    db = workdir / "session.sqlite"
    if db.exists() and not fresh:
        print(f"mutation: session exists ({db}); continuing it (--fresh to start over)")
        return db
    workdir.mkdir(parents=True, exist_ok=True)
    exe = tool(workdir)
    workspaces = [workdir / f"ws{i}" for i in range(settings.workers)]
    for ws in workspaces:
        snapshot(ws)
    baseline(settings, workspaces[0])
    db.unlink(missing_ok=True)
    config = cr_config(settings, workdir / "cosmic-ray.toml")
    pristine = workdir / "pristine"  # the unmutated modules (the workers mutate ws*/ in place)
    for m in settings.modules:
        (pristine / m).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workspaces[0] / m, pristine / m)
    subprocess.run([str(exe), "init", str(config), str(db)], cwd=workspaces[0], check=True)
    counts = classify(db, pristine, settings)
    (workdir / "snapshot.json").write_text(json.dumps({
        "fingerprint": fingerprint(workspaces[0], settings.modules),
        "taken": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git_head": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                   text=True).stdout.strip()}))
    print(f"mutation: {len(mutants(db))} mutants enumerated; skipped: {dict(counts)}")
    return db


def cmd_run(workdir: Path, settings: Settings) -> None:
    db = cmd_init(workdir, settings, fresh=False)
    snap = json.loads((workdir / "snapshot.json").read_text())
    if fingerprint(ROOT, settings.modules) != snap["fingerprint"]:
        print("mutation: note: the mock changed since the snapshot was taken; this session keeps testing the "
              "snapshot (--fresh re-snapshots and starts over)")
    workspaces = [workdir / f"ws{i}" for i in range(settings.workers)]
    print(f"mutation: before: {dict(progress(db))}")
    exec_session(tool(workdir), workdir / "cosmic-ray.toml", db, workspaces, workdir / "run.log")
    print(f"mutation: after: {dict(progress(db))}")


def _key(m: Mutant, source_lines: list[str]) -> tuple[str, str, str, int, int, int]:
    line = source_lines[m.start[0] - 1].strip()
    indent = len(source_lines[m.start[0] - 1]) - len(source_lines[m.start[0] - 1].lstrip())
    return (m.module, m.operator, line, m.start[1] - indent, m.end[0] - m.start[0], m.end[1])


def _keyed(ms: list[Mutant], base: Path) -> dict[tuple[tuple[str, str, str, int, int, int], int], Mutant]:
    """Mutants keyed by their source text (plus rank among equal keys): stable across line shifts."""
    lines = {mod: (base / mod).read_text().splitlines() for mod in {m.module for m in ms}}
    seen: Counter[tuple[str, str, str, int, int, int]] = Counter()
    out = {}
    for m in ms:
        k = _key(m, lines[m.module])
        out[(k, seen[k])] = m
        seen[k] += 1
    return out


def cmd_check(workdir: Path, settings: Settings, ids: list[str], survivors: bool) -> int:
    """Re-run chosen mutants of the session against the current checkout. Returns how many survive."""
    db = workdir / "session.sqlite"
    old = mutants(db)
    res = results(db)
    by_mid = {m.mid: m for m in old}
    chosen = {by_mid[i] for i in ids}
    if survivors:
        chosen |= {m for m in old if m.job_id in res and outcome(res[m.job_id]) == "survived"}
    if not chosen:
        print("mutation: nothing to check")
        return 0
    exe = tool(workdir)
    check = workdir / "check"
    workspaces = [check / f"ws{i}" for i in range(settings.workers)]
    for ws in workspaces:
        snapshot(ws)
        register_parts(ws)
    baseline(settings, workspaces[0])
    cdb = check / "check.sqlite"
    cdb.unlink(missing_ok=True)
    config = cr_config(settings, check / "cosmic-ray.toml")
    subprocess.run([str(exe), "init", str(config), str(cdb)], cwd=workspaces[0], check=True,
                   stdout=subprocess.DEVNULL)
    old_keyed = {v.job_id: k for k, v in _keyed(old, workdir / "pristine").items()}
    new_keyed = _keyed(mutants(cdb), workspaces[0])
    wanted: dict[str, Mutant] = {}
    for m in sorted(chosen, key=lambda m: m.mid):
        new = new_keyed.get(old_keyed[m.job_id])
        if new is None:
            print(f"  {m.mid}: its source line is gone from the current mock (the code it mutated changed)")
            continue
        wanted[new.job_id] = m
    mark_skipped(cdb, {m.job_id: "not selected" for m in mutants(cdb) if m.job_id not in wanted})
    exec_session(exe, config, cdb, workspaces, check / "run.log")
    now = results(cdb)
    alive = 0
    verdicts_file = workdir / "rechecked.json"
    verdicts = json.loads(verdicts_file.read_text()) if verdicts_file.exists() else {}
    for job, m in sorted(wanted.items(), key=lambda kv: kv[1].mid):
        verdict = outcome(now[job]) if job in now else "not run"
        alive += verdict == "survived"
        verdicts[m.mid] = {"verdict": verdict, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "git_head": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                                      text=True).stdout.strip()}
        print(f"  {m.mid}: {verdict}")
    verdicts_file.write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
    return alive


def load_equivalent() -> dict[str, str]:
    """mutation/equivalent.md: ``### <mutant id>`` headings, each followed by the reason."""
    out: dict[str, str] = {}
    current = None
    for line in EQUIVALENT.read_text().splitlines() if EQUIVALENT.exists() else []:
        if line.startswith("### "):
            current = line[4:].strip().strip("`")
            out[current] = ""
        elif current and line.startswith("Why:"):
            out[current] = line[4:].strip()
    return out


def cmd_report(workdir: Path, settings: Settings) -> None:
    db = workdir / "session.sqlite"
    res = results(db)
    ms = mutants(db)
    snap = json.loads((workdir / "snapshot.json").read_text())
    rows = []
    for m in ms:
        r = res.get(m.job_id)
        if r is None:
            continue
        if outcome(r) == "survived":
            rows.append({"id": m.mid, "module": m.module, "line": m.start[0], "function": m.function,
                         "operator": m.operator, "diff": r[3]})
    rechecked_file = workdir / "rechecked.json"
    rechecked = json.loads(rechecked_file.read_text()) if rechecked_file.exists() else {}
    equivalent = load_equivalent()
    for row in rows:
        row["recheck"] = rechecked.get(row["id"], {}).get("verdict")
        row["listed_equivalent"] = row["id"] in equivalent
    SURVIVORS.write_text(json.dumps({"snapshot": snap, "survivors": rows}, indent=1) + "\n")
    c = progress(db)
    killed_first = c["killed"] + c["timeout"]
    answered = [r["id"] for r in rows if r["recheck"] in ("killed", "timeout")]
    listed = [r["id"] for r in rows if r["listed_equivalent"] and r["id"] not in answered]
    open_ = [r["id"] for r in rows if r["id"] not in answered and r["id"] not in listed]
    run = killed_first + len(rows)
    non_equivalent = run - len(listed)
    killed = killed_first + len(answered)
    score = 100.0 * killed / non_equivalent if non_equivalent else 0.0
    total = sum(c.values())
    lines = [
        "# Mutation testing results",
        "",
        "Written by `python -m mutation report` (docs/mutation.md). Tool: cosmic-ray 8.7.0.",
        f"Snapshot of the mock: {snap['taken']}, git HEAD {snap['git_head'][:12]} plus the work tree then, "
        f"fingerprint {snap['fingerprint']}.",
        "",
        f"**Score: {killed} killed of {non_equivalent} non-equivalent mutants run = {score:.1f}%**"
        + (f" ({c['pending']} mutants not yet run)" if c["pending"] else ""),
        "",
        "| | mutants |",
        "| --- | ---: |",
        f"| enumerated by cosmic-ray (all operators) | {total} |",
        f"| skipped: operator outside the configured set | {c['skipped-operator']} |",
        f"| equivalent by construction (quirk-only code, annotations; not run) | {c['equivalent-by-construction']} |",
        f"| not yet run | {c['pending']} |",
        f"| run | {run} |",
        f"| killed on the first run | {killed_first} |",
        f"| … of which by the 60 s timeout | {c['timeout']} |",
        f"| survived the first run | {len(rows)} |",
        f"| … killed on re-check against the current suite (answered) | {len(answered)} |",
        f"| … listed equivalent in mutation/equivalent.md | {len(listed)} |",
        f"| … open (neither) | {len(open_)} |",
        "",
        "Score = (killed on the first run + answered) / (run − listed equivalent).",
        "",
    ]
    if answered:
        lines += ["## Answered survivors (killed on re-check)", "",
                  "Killed by the current suite: suites/test_sharpened.py (catalogue entries in "
                  "vfio_mig_cts/faults/book/mutation.py) or suites added since the snapshot (races, second open).", ""]
        lines += [f"- `{i}`" for i in answered] + [""]
    if open_:
        from mutation.triage import OPEN  # what would answer each (mutation/triage.py)

        lines += ["## Open survivors (count against the score)", ""]
        lines += [f"- `{i}`: {OPEN.get(str(i), 'not triaged yet')}" for i in open_] + [""]
    RESULTS.write_text("\n".join(lines))
    print(json.dumps(dict(c), indent=1))
    print(f"mutation: score {killed}/{non_equivalent} = {score:.1f}%; {len(open_)} open survivors; "
          f"written {RESULTS.relative_to(ROOT)}, {SURVIVORS.relative_to(ROOT)}")


def session_db(workdir: Path) -> Path:
    """The session's database, or a ``BadInput`` saying how to start one."""
    db = workdir / "session.sqlite"
    if not db.is_file():
        raise BadInput(f"no mutation session in {workdir}: start one with python -m mutation init "
                         "(or name its folder with --workdir)")
    return db


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BadInput as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 4


def _main(argv: list[str] | None) -> int:
    ap = Parser(prog="python -m mutation", description=__doc__,
                 formatter_class=argparse.RawDescriptionHelpFormatter,
                 epilog="Exit codes: 0 done; 1 (check) a mutant survived; 4 bad input (one line says what to do).")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    sub = ap.add_subparsers(dest="cmd", parser_class=Parser)
    p_init = sub.add_parser("init", help="snapshot the project and enumerate the mutants")
    p_init.add_argument("--fresh", action="store_true", help="discard the session and start over")
    sub.add_parser("run", help="run the pending mutants (init first if there is no session)")
    sub.add_parser("status", help="counts so far")
    sub.add_parser("reclassify", help="apply mutation/quirk_only.py again, to mutants already run too")
    sub.add_parser("report", help="write mutation/survivors.json and print the counts")
    p_check = sub.add_parser("check", help="re-run mutants against the current checkout")
    p_check.add_argument("ids", nargs="*")
    p_check.add_argument("--survivors", action="store_true", help="all survivors of the session")
    args = ap.parse_args(argv)
    settings = load_settings()
    workdir: Path = args.workdir.expanduser().resolve()
    if workdir.exists() and not workdir.is_dir():
        raise BadInput(f"--workdir {args.workdir} is a file, not a folder: name a folder")
    if args.cmd == "init":
        cmd_init(workdir, settings, args.fresh)
    elif args.cmd in (None, "run"):
        cmd_run(workdir, settings)
        cmd_report(workdir, settings)
    elif args.cmd == "status":
        print(json.dumps(dict(progress(session_db(workdir))), indent=1))
    elif args.cmd == "reclassify":
        db = session_db(workdir)
        print(f"mutation: reclassified: {dict(classify(db, workdir / 'pristine', settings, reclassify=True))}")
    elif args.cmd == "report":
        session_db(workdir)
        cmd_report(workdir, settings)
    elif args.cmd == "check":
        known = {m.mid for m in mutants(session_db(workdir))}
        unknown = [i for i in args.ids if i not in known]
        if unknown:
            raise BadInput(f"check: unknown mutant id {unknown[0]!r}: the ids are in mutation/results.md "
                             "and mutation/survivors.json (e.g. driver.NumberReplacer.3)")
        return 1 if cmd_check(workdir, settings, args.ids, args.survivors) else 0
    return 0
