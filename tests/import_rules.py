"""A contract type for import-linter that the built-in ones cannot say: "these modules never import
these names", e.g. `flask.request` (import-linter sees only the package `flask`).

Used in `.importlinter`; each source module is read with `ast`, so `from flask import request`,
`from flask import session as s` and `flask.request` in code are all found.
"""
import ast
import importlib.util

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class ForbiddenNamesContract(Contract):
    """Modules of `source_modules` (packages with what is under them) may not use `forbidden_names`
    (dotted: `flask.request`, `flask_login.current_user`)."""

    type_name = "forbidden_names"

    source_modules = fields.ListField(subfield=fields.StringField())
    forbidden_names = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        forbidden = set(self.forbidden_names)
        found = []
        for module in sorted(graph.modules):
            if not any(module == src or module.startswith(src + ".") for src in self.source_modules):
                continue
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                continue
            with open(spec.origin, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), spec.origin)
            for line, name in _names_used(tree):
                if name in forbidden:
                    found.append((module, line, name))
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, name in check.metadata["found"]:
            output.print_error(f"{module}:{line} uses {name}", bold=False)
            output.new_line()


def _names_used(tree: ast.AST):
    """(line, dotted name) of every imported name and every attribute of an imported module."""
    modules = {}  # local name -> module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            yield node.lineno, f"{modules[node.value.id]}.{node.attr}"
