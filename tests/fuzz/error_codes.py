"""Every error code the code base can produce, found by reading the source (AST), for docs/errors.md.

Three kinds:

* **exceptions** -- ``SbsError`` subclasses' default ``code`` class attributes and every
  ``code="..."`` keyword of a call that builds an exception (``raise X(..., code=...)``), with
  the module and function that raises it and the message text;
* **problems** -- ``Problem("code", ...)`` records ``open()`` attaches to ``SbsFile.problems``
  (``open(strict=True)`` raises some of them as ``ContainerError``);
* **findings** -- ``sbs_tools.verify.CODES``, the registry of ``verify`` findings.

``python -m tests.fuzz.error_codes`` prints them; ``test_error_docs.py`` checks that
``docs/errors.md`` names every one.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sbs_tools", "inference")
#: ``code=f"{key}-undecodable"`` in sbsfile.py: the keys it is used with.
DYNAMIC = {"{key}-undecodable": ["config-undecodable", "toc-undecodable"]}


@dataclass(frozen=True)
class Site:
    code: str
    kind: str  # "exception" | "class-default" | "problem"
    module: str
    function: str
    cls: str  # exception class (or "Problem")
    message: str


def _str(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in node.values)
    return None


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "?")


def _sites_in(path: Path) -> list[Site]:
    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    tree = ast.parse(path.read_text(), str(path))
    out: list[Site] = []

    def visit(node, func: str, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{cls}.{child.name}" if cls else child.name, cls)
                continue
            if isinstance(child, ast.ClassDef):
                for stmt in child.body:
                    if (isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "code" for t in stmt.targets)
                            and _str(stmt.value)):
                        doc = ast.get_docstring(child) or ""
                        out.append(Site(_str(stmt.value), "class-default", mod, child.name, child.name,
                                        doc.split("\n")[0]))
                visit(child, func, child.name)
                continue
            if isinstance(child, ast.Call):
                name = _callee(child)
                msg = _str(child.args[0]) if child.args else None
                for kw in child.keywords:
                    if kw.arg != "code":
                        continue
                    values = [kw.value.body, kw.value.orelse] if isinstance(kw.value, ast.IfExp) else [kw.value]
                    for v in values:
                        if (code := _str(v)) is not None:
                            for c in DYNAMIC.get(code, [code]):
                                out.append(Site(c, "exception", mod, func, name, msg or ""))
                if name in ("Problem", "_problem") and child.args and (code := _str(child.args[0])):
                    out.append(Site(code, "problem", mod, func, "Problem",
                                    _str(child.args[2]) if len(child.args) > 2 else ""))
            if isinstance(child, ast.Assign) and any(getattr(t, "id", "") == "code" for t in child.targets) \
                    and isinstance(child.value, ast.IfExp):  # code = "a" if ... else "b"; raise X(..., code=code)
                for v in (child.value.body, child.value.orelse):
                    if (code := _str(v)) is not None:
                        out.append(Site(code, "exception", mod, func, "(variable)", ""))
            visit(child, func, cls)

    visit(tree, "<module>", None)
    return out


def exception_sites() -> list[Site]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out += _sites_in(path)
    return [s for s in out if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s.code)]


def finding_codes() -> dict:
    from sbs_tools.verify import CODES

    return dict(CODES)


def main() -> None:
    by_code: dict[str, list[Site]] = {}
    for s in exception_sites():
        by_code.setdefault(s.code, []).append(s)
    for code in sorted(by_code):
        print(code)
        for s in by_code[code]:
            print(f"    {s.kind:13s} {s.module}:{s.function} {s.cls}: {s.message[:90]}")
    print(f"\n{len(by_code)} exception/problem codes; {len(finding_codes())} verify finding codes")


if __name__ == "__main__":
    main()
