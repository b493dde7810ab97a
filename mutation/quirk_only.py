"""Which source spans run only when a mock quirk is on: mutants there are equivalent by construction.

The correct mock runs with ``Quirks()`` (every knob at its default). A statement guarded by
``if q.some_knob ...:`` (a knob whose default is falsy) never runs then, and an operand after a
falsy knob in an ``and`` chain is never evaluated, so no mutation inside them can change what the
correct mock does through the uAPI. Mutations of the knob test itself (``q.x`` -> ``not q.x``) are
not in these spans and are run like any other.
"""

from __future__ import annotations

import ast
from dataclasses import fields

Span = tuple[tuple[int, int], tuple[int, int]]  # ((line, col), (end_line, end_col)), cosmic-ray's convention


def _falsy_knobs() -> frozenset[str]:
    from vfio_mig_cts.backends.mock.quirks import Quirks

    defaults = Quirks()
    return frozenset(f.name for f in fields(Quirks) if not getattr(defaults, f.name))


def _is_knob(node: ast.AST, knobs: frozenset[str]) -> bool:
    """``q.knob`` / ``self.q.knob`` / ``self.quirks.knob`` for a knob that is off by default."""
    if not isinstance(node, ast.Attribute) or node.attr not in knobs:
        return False
    base = node.value
    return (isinstance(base, ast.Name) and base.id in {"q", "quirks"}) or (
        isinstance(base, ast.Attribute) and base.attr in {"q", "quirks"})


def _is_knob_any(node: ast.AST, knobs: frozenset[str]) -> bool:
    """A knob, or ``knob or knob ...`` (false when every knob is off)."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        return all(_is_knob_any(v, knobs) for v in node.values)
    return _is_knob(node, knobs)


def _off_by_default(test: ast.AST, knobs: frozenset[str]) -> bool:
    """Whether ``test`` is false whenever every knob is off."""
    if _is_knob_any(test, knobs):
        return True
    return isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) and any(
        _off_by_default(v, knobs) for v in test.values)


def _pure(node: ast.AST) -> bool:
    """No calls, no assignment expressions: evaluating it changes nothing and cannot raise in practice."""
    return not any(isinstance(n, ast.Call | ast.NamedExpr | ast.Await) for n in ast.walk(node))


def _or_ops(node: ast.BoolOp) -> Span:
    """The span between an ``or`` chain's first and last operand (where its ``or`` keywords stand)."""
    return (_span(node.values[0])[1], _span(node.values[-1])[0])


def _annotations(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
        return [node.annotation]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
        return [node.returns]
    return []


def _span(node: ast.AST) -> Span:
    line, col = getattr(node, "lineno"), getattr(node, "col_offset")  # noqa: B009 (every node we pass has them)
    return ((line, col), (getattr(node, "end_lineno", None) or line, getattr(node, "end_col_offset", None) or 0))


def _block_span(stmts: list[ast.stmt]) -> Span:
    return (_span(stmts[0])[0], _span(stmts[-1])[1])


def quirk_only_spans(source: str) -> list[tuple[Span, str]]:
    """The spans of ``source`` that run only with some quirk on, each with the reason."""
    knobs = _falsy_knobs()
    tree = ast.parse(source)
    out: list[tuple[Span, str]] = []

    def guarded(test: ast.AST) -> str:
        return ast.unparse(test)

    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.IfExp) and _off_by_default(node.test, knobs):
            body = node.body
            if isinstance(body, list):
                out.append((_block_span(body), f"body of `if {guarded(node.test)}`"))
            else:
                out.append((_span(body), f"value of `... if {guarded(node.test)}`"))
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for i, v in enumerate(node.values):
                if _off_by_default(v, knobs):
                    rest = node.values[i + 1:]
                    if rest:
                        out.append(((_span(rest[0])[0], _span(rest[-1])[1]),
                                    f"operand after `{ast.unparse(v)}` (never evaluated)"))
                    # operands before the falsy knob: evaluated, but the chain is false whatever they give
                    out.extend((_span(w), f"operand before `{ast.unparse(v)}` in a chain that knob makes false")
                               for w in node.values[:i] if _pure(w))
                    if i > 0 and _pure(node.values[0]):
                        # AddNot puts `not ` before the chain: by precedence it negates the first operand only
                        out.append((_span(node), f"ADDNOT:`not` binds to the first operand of a chain "
                                                 f"`{ast.unparse(v)}` makes false"))
                    break
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and _is_knob_any(node, knobs):
            out.append((_or_ops(node), f"`or` of knobs in `{ast.unparse(node)}` (false either way)"))
        for ann in _annotations(node):
            out.append((_span(ann), "a type annotation (never evaluated: `from __future__ import annotations`)"))
        body_lists = [getattr(node, a) for a in ("body", "orelse", "finalbody")
                      if isinstance(getattr(node, a, None), list)]
        for stmts in body_lists:
            for i, st in enumerate(stmts):
                # ``if not (knob or knob): return ...`` -> the rest of the block runs only with a knob on
                if isinstance(st, ast.If) and isinstance(st.test, ast.UnaryOp) and isinstance(st.test.op, ast.Not) \
                        and _is_knob_any(st.test.operand, knobs) and isinstance(st.body[-1], ast.Return) \
                        and not st.orelse and i + 1 < len(stmts):
                    out.append((_block_span(stmts[i + 1:]), f"after `if {ast.unparse(st.test)}: return`"))
    return out


def _inside(inner: Span, outer: Span) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def reason_for(spans: list[tuple[Span, str]], mutation: Span, operator: str = "") -> str | None:
    """Why ``mutation`` (by ``operator``) is equivalent by construction, or None."""
    for span, reason in spans:
        if reason.startswith("ADDNOT:"):
            if operator == "core/AddNot" and mutation == span:
                return reason.removeprefix("ADDNOT:")
        elif _inside(mutation, span):
            return reason
    return None
