"""The conformance matrix, drawn from the result record: per device and feature set, and per rule family.

Rules:

- The grid: the tests whose record carries an arc (``Case`` with from-state and requested state),
  from-state rows x requested-state columns (the 8 states, then the out-of-range values 8 and
  0xffffffff), one grid per device and feature set. As terminal lines and as
  ``matrix-<device>-<feature set>.svg``.
- The families view: for each rule family, how many tests checking one of its rules passed, failed,
  warned ...; a test counts against a family only where one of that family's rules broke. As lines
  and as ``matrix-<device>-families.svg``.
- The problems of a grid (failed, error, unexpected pass, warning) are listed with the rule, expected
  and observed; lines wrap, never cut.
- The SVGs are plain SVG 1.1 text (no dependency); each cell has a tooltip with the test id and its
  outcome.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from vfio_mig_cts.reports.record import Outcome, TestRecord
from vfio_mig_cts.spec.registry import RULES, Family
from vfio_mig_cts.uapi.vfio import State

OUTCOMES = tuple(o.value for o in Outcome)
SYMBOL = {"passed": ".", "failed": "F", "warning": "W", "skipped": "s", "hazard": "H", "xfailed": "x",
          "xpassed": "X", "error": "E", "": " "}
LABEL = {"passed": "pass", "failed": "fail (a must rule broken)", "warning": "warning (should/convention)",
         "skipped": "skip", "hazard": "hazard not run", "xfailed": "known failure (expectation file)",
         "xpassed": "unexpected pass", "error": "error", "": "not run"}
COLOR = {"passed": "#7cc47f", "failed": "#e0483e", "warning": "#f2b233", "skipped": "#c9c9c9",
         "hazard": "#9c6ade", "xfailed": "#f4a6a0", "xpassed": "#8e1c14", "error": "#5d4037", "": "#ffffff"}
# Columns and rows in the order a migration walks them.
STATE_ORDER = ("RUNNING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P", "STOP", "STOP_COPY", "RESUMING", "ERROR")
COLUMNS = (*STATE_ORDER, "8", "0xffffffff")
SHORT = {"RUNNING": "RUN", "RUNNING_P2P": "RP2P", "PRE_COPY": "PRE", "PRE_COPY_P2P": "PP2P", "STOP": "STOP",
         "STOP_COPY": "SCPY", "RESUMING": "RES", "ERROR": "ERR", "8": "8", "0xffffffff": "0xff"}
FEATURE_SET_ORDER = ("stop_copy", "p2p", "pre_copy", "p2p+pre_copy")
PROBLEMS = ("failed", "error", "xpassed", "warning")


def reason(r: TestRecord) -> str:
    """What a problem cell says: its findings (rule, expected, observed), else the message's first line."""
    if r.findings and r.outcome is not Outcome.XPASSED:
        return "; ".join(f.summary() for f in r.findings)
    return r.headline


# --- the grid ------------------------------------------------------------------------------------------

@dataclass
class Grid:
    device: str
    driver: str
    feature_set: str
    cells: dict[tuple[str, str], TestRecord] = field(default_factory=dict)

    def rows(self) -> list[str]:
        present = {frm for frm, _ in self.cells}
        return [s for s in STATE_ORDER if s in present] + sorted(present - set(STATE_ORDER))

    def counts(self) -> Counter[str]:
        return Counter(r.outcome.value for r in self.cells.values())

    def problems(self) -> list[TestRecord]:
        return [r for r in self.cells.values() if r.outcome.value in PROBLEMS]


def _canon_to(to: str) -> str:
    if to.isdigit() or to.startswith("0x"):
        try:
            value = int(to, 0)
        except ValueError:
            return to
        if value < len(State):
            return State(value).name
        return "0xffffffff" if value == 0xFFFFFFFF else str(value)
    return to


def grids(records: Iterable[TestRecord]) -> list[Grid]:
    """One grid per device and feature set, in the order devices appear and feature sets are listed."""
    out: dict[tuple[str, str], Grid] = {}
    for r in records:
        if r.case is None or not r.case.from_state:
            continue
        key = (r.device, r.feature_set)
        g = out.get(key)
        if g is None:
            g = out[key] = Grid(r.device, r.driver, r.feature_set)
        g.cells[(r.case.from_state, _canon_to(r.case.to_state))] = r

    def order(g: Grid) -> tuple[int, str]:
        fs = FEATURE_SET_ORDER.index(g.feature_set) if g.feature_set in FEATURE_SET_ORDER else len(FEATURE_SET_ORDER)
        return fs, g.feature_set
    devices = list(dict.fromkeys(g.device for g in out.values()))
    return sorted(out.values(), key=lambda g: (devices.index(g.device), *order(g)))


def columns(g: Grid) -> list[str]:
    present = {to for _, to in g.cells}
    return [c for c in COLUMNS if c in present] + sorted(present - set(COLUMNS))


def grid_lines(g: Grid) -> list[str]:
    cols = columns(g)
    head = f"{g.feature_set:<14}" + "".join(f"{SHORT.get(c, c[:4]):>5}" for c in cols)
    lines = [head]
    for frm in g.rows():
        cells = "".join(f"{SYMBOL[g.cells[(frm, c)].outcome.value if (frm, c) in g.cells else '']:>5}" for c in cols)
        lines.append(f"{frm:<14}{cells}")
    c = g.counts()
    lines.append("  " + ", ".join(f"{c[o]} {o}" for o in OUTCOMES if c[o]))
    return lines


def side_by_side(blocks: list[list[str]], width: int, gap: int = 4) -> list[str]:
    """Blocks of lines placed left to right while they fit in ``width``."""
    out: list[str] = []
    row: list[list[str]] = []

    def flush() -> None:
        if not row:
            return
        widths = [max(len(ln) for ln in b) for b in row]
        for i in range(max(len(b) for b in row)):
            parts = [(b[i] if i < len(b) else "").ljust(w) for b, w in zip(row, widths, strict=True)]
            out.append((" " * gap).join(parts).rstrip())
        out.append("")
        row.clear()
    for b in blocks:
        cur = sum(max(len(ln) for ln in x) + gap for x in row)
        if row and cur + max(len(ln) for ln in b) > width:
            flush()
        row.append(b)
    flush()
    return out


# --- the families view --------------------------------------------------------------------------------

FAMILY_COLUMNS = ("passed", "failed", "warning", "xfailed", "xpassed", "skipped", "hazard", "error")


def families(records: Iterable[TestRecord]) -> dict[str, dict[str, Counter[str]]]:
    """device -> family -> outcome counts (see the module rules)."""
    out: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: {f.value: Counter() for f in Family})
    for r in records:
        fams: dict[str, list[str]] = defaultdict(list)
        for rid in r.rules:
            rule = RULES.get(rid)
            if rule is not None:
                fams[rule.family.value].append(rid)
        for fam, rids in fams.items():
            kind = r.outcome.value
            if kind in ("failed", "warning", "xfailed") and not set(rids) & set(r.broken):
                kind = "passed"  # this family held; another one broke
            out[r.device][fam][kind] += 1
    return dict(out)


def family_lines(device: str, table: dict[str, Counter[str]]) -> list[str]:
    head = f"{'family':<20}" + "".join(f"{c:>9}" for c in FAMILY_COLUMNS)
    lines = [head]
    for fam, c in table.items():
        if not sum(c.values()):
            continue  # no test of this run checked the family
        mark = "  <-" if c["failed"] or c["error"] or c["xpassed"] else ("  (w)" if c["warning"] else "")
        lines.append(f"{fam:<20}" + "".join(f"{c[k]:>9}" for k in FAMILY_COLUMNS) + mark)
    return lines


# --- SVG ----------------------------------------------------------------------------------------------------

def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "device"


CELL, LEFT, TOP, FONT = 34, 132, 150, "font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\""


def _text(x: float, y: float, s: str, size: int = 12, anchor: str = "start", weight: str = "normal",
          fill: str = "#222", extra: str = "") -> str:
    return (f'<text x="{x:g}" y="{y:g}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}" {FONT}{extra}>{escape(s)}</text>')


def _legend(x: float, y: float, kinds: Iterable[str]) -> tuple[list[str], float]:
    parts, yy = [], y
    for k in kinds:
        parts.append(f'<rect x="{x:g}" y="{yy - 11:g}" width="14" height="14" fill="{COLOR[k]}" stroke="#888"/>')
        parts.append(_text(x + 7, yy, SYMBOL[k], 10, "middle", "bold", "#fff" if k in ("failed", "xpassed", "error",
                                                                                     "hazard") else "#222"))
        parts.append(_text(x + 22, yy, LABEL[k], 12))
        yy += 20
    return parts, yy


def _problem_line(r: TestRecord) -> str:
    where = f"{r.case.from_state} -> {_canon_to(r.case.to_state)}" if r.case else r.name
    return f"{SYMBOL[r.outcome.value]} {where}: {reason(r)}"[:180]


def grid_svg(g: Grid, title: str = "vfio-mig-cts conformance matrix", max_problems: int = 12) -> str:
    cols, rows = columns(g), g.rows()
    problems = g.problems()
    shown = problems[:max_problems]
    grid_w = CELL * len(cols)
    lines = [_problem_line(r) for r in shown]
    width = max(LEFT + grid_w + 320, 900, 24 + int(6.7 * max((len(x) for x in lines), default=0)))
    bottom = TOP + CELL * len(rows) + 30
    height = max(bottom + 24 + 18 * (len(shown) + (1 if len(problems) > len(shown) else 0)) + 16, TOP + 9 * 20 + 40)
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}">',
         f"<title>{escape(title)}: {escape(g.device)} {escape(g.feature_set)}</title>",
         f'<rect width="{width}" height="{height}" fill="#fff"/>',
         _text(12, 24, f"{title}", 16, weight="bold"),
         _text(12, 44, f"device {g.device}" + (f" (driver {g.driver})" if g.driver else "")
               + f"   feature set {g.feature_set}", 13),
         _text(LEFT + grid_w / 2, 66, "requested state (SET)", 12, "middle", "bold"),
         _text(12, TOP - 8, "from-state", 12, weight="bold")]
    for j, c in enumerate(cols):
        x = LEFT + CELL * j + CELL / 2 + 4
        p.append(_text(x, TOP - 6, c, 10, extra=f' transform="rotate(-50 {x:g} {TOP - 6})"'))
    for i, frm in enumerate(rows):
        y = TOP + CELL * i
        p.append(_text(LEFT - 8, y + CELL / 2 + 4, frm, 11, "end"))
        for j, c in enumerate(cols):
            x = LEFT + CELL * j
            rec = g.cells.get((frm, c))
            kind = rec.outcome.value if rec else ""
            tip = f"{frm} -> {c}: {LABEL[kind]}" + (f"\n{rec.nodeid}" if rec else "") \
                + (f"\n{reason(rec)}" if rec and reason(rec) else "")
            p.append(f'<g><title>{escape(tip)}</title>'
                     f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{COLOR[kind]}" stroke="#777" '
                     'stroke-width="0.6"/>')
            if kind:
                p.append(_text(x + CELL / 2, y + CELL / 2 + 5, SYMBOL[kind], 14, "middle", "bold",
                               "#fff" if kind in ("failed", "xpassed", "error", "hazard") else "#222"))
            p.append("</g>")
    counts = g.counts()
    summary = ", ".join(f"{counts[o]} {LABEL[o].split(' (')[0]}" for o in OUTCOMES if counts[o])
    p.append(_text(12, bottom, summary, 12, weight="bold"))
    y = bottom + 24
    for r, line in zip(shown, lines, strict=True):
        p.append(_text(12, y, line, 11, fill="#a01810" if r.outcome is not Outcome.WARNING else "#7a5200"))
        y += 18
    if len(problems) > len(shown):
        p.append(_text(12, y, f"... and {len(problems) - len(shown)} more (results.json)", 11))
    legend, _ = _legend(LEFT + grid_w + 30, TOP, [*OUTCOMES, ""])
    p.extend(legend)
    p.append("</svg>")
    return "\n".join(p) + "\n"


def families_svg(device: str, driver: str, table: dict[str, Counter[str]],
                 title: str = "vfio-mig-cts rule families") -> str:
    bar_w, row_h, left = 420, 26, 170
    kinds = list(FAMILY_COLUMNS)
    width = left + bar_w + 330
    height = 80 + row_h * len(table) + 60
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}">',
         f"<title>{escape(title)}: {escape(device)}</title>",
         f'<rect width="{width}" height="{height}" fill="#fff"/>',
         _text(12, 24, title, 16, weight="bold"),
         _text(12, 44, f"device {device}" + (f" (driver {driver})" if driver else "")
               + "   tests per family, by outcome", 13)]
    most = max((sum(c.values()) for c in table.values()), default=0) or 1
    for i, (fam, c) in enumerate(table.items()):
        y = 64 + row_h * i
        p.append(_text(left - 8, y + 17, fam, 12, "end"))
        x = float(left)
        total = sum(c.values())
        for k in kinds:
            if not c[k]:
                continue
            w = max(bar_w * c[k] / most, 2.0)
            p.append(f'<g><title>{escape(f"{fam}: {c[k]} {LABEL[k]}")}</title>'
                     f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{COLOR[k]}" '
                     'stroke="#777" stroke-width="0.5"/></g>')
            x += w
        detail = ", ".join(f"{c[k]} {k}" for k in kinds if c[k]) or "not checked"
        p.append(_text(left + bar_w + 12, y + 17, f"{total}: {detail}" if total else detail, 11))
    ly = 64 + row_h * len(table) + 30
    x = 12.0
    for k in kinds:
        p.append(f'<rect x="{x:g}" y="{ly - 11}" width="14" height="14" fill="{COLOR[k]}" stroke="#888"/>')
        p.append(_text(x + 18, ly, k, 11))
        x += 18 + 8 * len(k) + 16
    p.append("</svg>")
    return "\n".join(p) + "\n"


def write_svgs(records: list[TestRecord], folder: Path) -> list[Path]:
    """The grid and families images of every device into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for g in grids(records):
        path = folder / f"matrix-{safe_name(g.device)}-{safe_name(g.feature_set)}.svg"
        path.write_text(grid_svg(g))
        written.append(path)
    drivers = {r.device: r.driver for r in records}
    for device, table in families(records).items():
        path = folder / f"matrix-{safe_name(device)}-families.svg"
        path.write_text(families_svg(device, drivers.get(device, ""), table))
        written.append(path)
    return written


def terminal_lines(records: list[TestRecord], width: int, max_problems: int = 12) -> list[str]:
    """The grids side by side with their problems (wrapped to ``width``); empty without arcs."""
    out: list[str] = []
    gs = grids(records)
    if not gs:
        return out
    out.append("  ".join(f"{SYMBOL[k]} {LABEL[k].split(' (')[0]}" for k in OUTCOMES))
    out.append("rows: the state before SET; columns: the state requested (RUN RP2P PRE PP2P STOP SCPY RES ERR = "
               "RUNNING RUNNING_P2P PRE_COPY PRE_COPY_P2P STOP STOP_COPY RESUMING ERROR; 8 and 0xff = the "
               "out-of-range values 8 and 0xffffffff)")
    for device in dict.fromkeys(g.device for g in gs):
        mine = [g for g in gs if g.device == device]
        out += ["", f"device {device}" + (f" (driver {mine[0].driver})" if mine[0].driver else "")]
        out += side_by_side([grid_lines(g) for g in mine], width)
        problems = [r for g in mine for r in g.problems()]
        for r in problems[:max_problems]:
            out += textwrap.wrap(f"{SYMBOL[r.outcome.value]} {r.name}: {reason(r)}", width=max(width, 40),
                                 initial_indent="  ", subsequent_indent="      ")
        if len(problems) > max_problems:
            out.append(f"  ... and {len(problems) - max_problems} more (results.json)")
    return out


def family_terminal_lines(records: list[TestRecord]) -> list[str]:
    """The families table of each device."""
    out: list[str] = []
    drivers = {r.device: r.driver for r in records}
    for device, table in families(records).items():
        out += [f"device {device}" + (f" (driver {drivers[device]})" if drivers.get(device) else "")]
        out += [*family_lines(device, table), ""]
    return out
