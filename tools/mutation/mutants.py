"""Mutant generation for the rule modules: a small, fixed set of AST operators.

The operators are the ones that model the mistakes a rule module can hide (docs: README,
"Development"): comparison flips, ``any``/``all`` and ``and``/``or`` swaps, ``not`` dropped,
integer constants moved by one, guards and raises deleted, returned values replaced. Each
mutant has a stable id built from the enclosing function and the text of the mutated node (not
from a line number or a counter), so the checked-in equivalents list survives unrelated edits.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Mutant", "generate"]

_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_CMP_TEXT = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}
_EXITS = (ast.Raise, ast.Return, ast.Continue, ast.Break)


@dataclass(frozen=True)
class Mutant:
    module: str  # short module name from the config, e.g. "policy"
    id: str  # "<module>:<function>:<operator>:<hash8>"
    line: int
    description: str
    source: str  # the whole mutated module


def _skip_lines(source: str) -> set[int]:
    return {i for i, text in enumerate(source.splitlines(), 1) if "pragma: no mutate" in text}


class _Sites(ast.NodeVisitor):
    """Walks a module and yields (node path, operator, label, edit) for every mutation site."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.skip = _skip_lines(source)
        self.scope: list[str] = []
        self.sites: list[tuple[str, str, int, str, Callable[[ast.AST], None], tuple[int, ...]]] = []
        self._texts: list[str] = []

    # -- traversal with an index path, so the edit can find the node again in a copy --------
    def walk(self, node: ast.AST, path: tuple[int, ...] = ()) -> None:
        if self._ignored(node):
            return
        named = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if named:
            self.scope.append(node.name)  # type: ignore[attr-defined]
        self._sites_of(node, path)
        for i, child in enumerate(ast.iter_child_nodes(node)):
            self.walk(child, (*path, i))
        if named:
            self.scope.pop()

    def _ignored(self, node: ast.AST) -> bool:
        if getattr(node, "lineno", None) in self.skip:
            return True
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return True  # docstrings
        if (
            not self.scope
            and isinstance(node, ast.Dict)
            and all(isinstance(v, ast.Constant) for v in node.values)
        ):
            return True  # a module-level data table (e.g. precomputed selectors): its own
            # recompute test pins every entry; a +-1 per entry only multiplies the run time
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return True
        # annotations are never evaluated at run time (from __future__ import annotations)
        return isinstance(node, ast.arg) or (
            isinstance(node, ast.AnnAssign) and node.value is None
        )

    def _add(self, node: ast.AST, path: tuple[int, ...], op: str, label: str,
             edit: Callable[[ast.AST], None]) -> None:
        text = ast.get_source_segment(self.source, node) or ast.unparse(node)
        where = ".".join(self.scope) or "<module>"
        self.sites.append((where, op, node.lineno, f"{label} in `{_short(text)}`", edit, path))
        self._texts.append(" ".join(text.split()) + "|" + label)

    def _sites_of(self, node: ast.AST, path: tuple[int, ...]) -> None:
        if isinstance(node, ast.Compare):
            for i, cmp in enumerate(node.ops):
                new = _CMP_SWAP.get(type(cmp))
                if new is None:
                    continue
                label = f"{_CMP_TEXT[type(cmp)]} -> {_CMP_TEXT[new]}"

                def edit(n: ast.AST, i: int = i, new: type[ast.cmpop] = new) -> None:
                    n.ops[i] = new()  # type: ignore[attr-defined]

                self._add(node, path, "cmp", label, edit)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("any", "all"):
                other = "all" if node.func.id == "any" else "any"

                def swap(n: ast.AST, other: str = other) -> None:
                    n.func.id = other  # type: ignore[attr-defined]

                self._add(node, path, "anyall", f"{node.func.id} -> {other}", swap)
        elif isinstance(node, ast.BoolOp):
            other_op: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And
            names = {ast.And: "and", ast.Or: "or"}

            def flip(n: ast.AST, other_op: type[ast.boolop] = other_op) -> None:
                n.op = other_op()  # type: ignore[attr-defined]

            self._add(node, path, "andor",
                      f"{names[type(node.op)]} -> {names[other_op]}", flip)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._add(node, path, "not", "drop `not`", _structural)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int)
            and not isinstance(node.value, bool)
        ):
            for delta in (1, -1):
                if node.value + delta < 0:
                    continue

                def bump(n: ast.AST, delta: int = delta) -> None:
                    n.value += delta  # type: ignore[attr-defined]

                self._add(node, path, "const", f"{node.value} -> {node.value + delta}", bump)
        elif isinstance(node, ast.If) and any(isinstance(s, _EXITS) for s in node.body):
            self._add(node.test, (*path, 0), "guard", "guard deleted (condition False)",
                      _structural)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            self._add(node, path, "raise", "raise deleted", _structural)
        elif isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, bool):
                self._add(node, path, "return", f"return {not value.value}", _flip_bool)
            elif not (isinstance(value, ast.Constant) and value.value is None):
                self._add(node, path, "return", "return None", _return_none)


def _short(text: str, limit: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _structural(n: ast.AST) -> None:
    """Guard, raise and ``not`` mutants replace the node in its parent (see ``_apply``)."""


def _flip_bool(n: ast.AST) -> None:
    n.value.value = not n.value.value  # type: ignore[attr-defined]


def _return_none(n: ast.AST) -> None:
    n.value = ast.Constant(None)  # type: ignore[attr-defined]


def _node_at(tree: ast.AST, path: tuple[int, ...]) -> tuple[ast.AST, ast.AST | None]:
    parent: ast.AST | None = None
    node = tree
    for index in path:
        parent = node
        node = list(ast.iter_child_nodes(node))[index]
    return node, parent


def _replace_child(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise AssertionError("child not found")  # pragma: no cover


def _apply(tree: ast.Module, path: tuple[int, ...], op: str,
           edit: Callable[[ast.AST], None]) -> str:
    mutated = copy.deepcopy(tree)
    node, parent = _node_at(mutated, path)
    if op == "guard":
        assert parent is not None
        _replace_child(parent, node, ast.Constant(False))
    elif op == "raise":
        assert parent is not None
        _replace_child(parent, node, ast.Pass())
    elif op == "not":
        assert parent is not None
        _replace_child(parent, node, node.operand)  # type: ignore[attr-defined]
    else:
        edit(node)
    ast.fix_missing_locations(mutated)
    return ast.unparse(mutated)


def generate(module: str, source: str) -> Iterator[Mutant]:
    """Every mutant of ``source`` (the text of the module called ``module`` in the config)."""
    tree = ast.parse(source)
    sites = _Sites(source)
    sites.walk(tree)
    seen: dict[str, int] = {}
    pairs = zip(sites.sites, sites._texts, strict=True)
    for (where, op, line, description, edit, path), text in pairs:
        key = f"{module}:{where}:{op}:{text}"
        seen[key] = seen.get(key, 0) + 1  # identical text twice in one function: 2nd, 3rd...
        digest = hashlib.sha1(f"{key}#{seen[key]}".encode()).hexdigest()[:8]
        yield Mutant(
            module=module,
            id=f"{module}:{where}:{op}:{digest}",
            line=line,
            description=description,
            source=_apply(tree, path, op, edit),
        )
