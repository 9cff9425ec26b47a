"""Local Sphinx extension that keeps the docs in step with the code.

``.. sgcl-cli-help:: [SUBCOMMAND]``
    The ``--help`` text of ``sgcache-layers`` (or of one subcommand), made by the
    command's own argument parser at build time.

``.. sgcl-public-names::``
    A table of every name in ``sgcache_layers.__all__``: a link to its API entry in
    the module that defines it, and the first paragraph of its documentation.

It also

* lets references to re-exported names (``sgcache_layers.Session``, or a bare
  ``MemoryCache`` in a docstring) find the entry in the defining module, see
  :func:`_resolve_public_name`;
* keeps napoleon from misreading attribute docstrings, see
  :func:`_keep_attribute_colons`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from typing import Any, Optional

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

HELP_WIDTH = 88

#: Packages whose ``__all__`` names may be referred to without their defining module.
PUBLIC_PACKAGES = ("sgcache_layers", "sgcache_layers.testing")


# -- sgcl-cli-help -------------------------------------------------------------------------


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    """Make *parser* format its help at a fixed width, whatever the terminal."""

    def formatter(prog: str) -> argparse.HelpFormatter:
        return argparse.HelpFormatter(prog, width=HELP_WIDTH)

    parser.formatter_class = formatter  # type: ignore[assignment]


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]  # type: ignore[no-any-return]
    raise ValueError(f"sgcache-layers has no subcommand {name!r}")


class CliHelp(SphinxDirective):
    """Render ``sgcache-layers [SUBCOMMAND] --help`` as a literal block."""

    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from sgcache_layers.cli import build_parser

        parser = build_parser()
        if self.arguments:
            try:
                parser = _subparser(parser, self.arguments[0])
            except ValueError as exc:
                return [self.state.document.reporter.warning(str(exc), line=self.lineno)]
        _fixed_width(parser)
        text = parser.format_help().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


# -- public names --------------------------------------------------------------------------


def _defining_module(package: Any, name: str, obj: Any) -> str:
    """The submodule that defines the object *name*: the one listing it in ``__all__``."""
    prefix = package.__name__ + "."
    for module_name in sorted(sys.modules):
        module = sys.modules[module_name]
        if module is None or not module_name.startswith(prefix):
            continue
        if name in getattr(module, "__all__", ()) and getattr(module, name, None) is obj:
            return module_name
    return str(package.__name__)


def _public_target(package: Any, name: str) -> Optional[tuple[str, str, str]]:
    """``(role, full dotted target, defining module)`` of the public *name*, or None."""
    if name.startswith("__"):
        return None
    obj = getattr(package, name)
    if inspect.isclass(obj):
        role = "exc" if issubclass(obj, BaseException) else "class"
        return role, f"{obj.__module__}.{obj.__qualname__}", obj.__module__
    if inspect.isfunction(obj) and obj.__name__ == name:
        return "func", f"{obj.__module__}.{name}", obj.__module__
    # A module-level object (NOT_SET, the memoise decorator): documented as data.
    module = _defining_module(package, name, obj)
    return "data", f"{module}.{name}", module


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def _attribute_summary(module: str, name: str) -> str:
    """The ``#:`` comment above a module-level assignment, as one line."""
    try:
        docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    except PycodeError:
        return ""
    return " ".join(" ".join(docs.get(("", name), [])).split())


class PublicNames(SphinxDirective):
    """A table of a package's ``__all__`` with links to the defining modules."""

    has_content = False
    option_spec = {"package": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        package = importlib.import_module(self.options.get("package", "sgcache_layers"))
        table = nodes.table(classes=["sgcl-public-names"])
        group = nodes.tgroup(cols=2)
        table += group
        group += nodes.colspec(colwidth=25)
        group += nodes.colspec(colwidth=75)
        head = nodes.thead()
        head += self._row([nodes.paragraph(text="Name"), nodes.paragraph(text="What it is")])
        group += head
        body = nodes.tbody()
        group += body
        for name in package.__all__:
            target = _public_target(package, name)
            if target is None:
                value = getattr(package, name)
                body += self._row(
                    self._parse(f"``{name}``", package.__name__)
                    + self._parse(f"``{value!r}``", package.__name__)
                )
                continue
            role, full, module = target
            obj = getattr(package, name)
            summary = _attribute_summary(module, name) if role == "data" else _summary(obj)
            # Each cell is parsed in its module, so short references in a summary resolve.
            body += self._row(
                self._parse(f":{role}:`~{full}`", module)
                + self._parse(summary or f"See :mod:`{module}`.", module)
            )
        return [table]

    @staticmethod
    def _row(cells: list[nodes.Node]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += cell
            row += entry
        return row

    def _parse(self, text: str, module: str) -> list[nodes.Node]:
        """Parse one cell of reST with ``module`` as the current Python module."""
        context = self.env.ref_context
        previous = context.get("py:module")
        context["py:module"] = module
        try:
            holder = nodes.container()
            self.state.nested_parse(StringList([text], source="<sgcl-public-names>"), 0, holder)
        finally:
            if previous is None:
                context.pop("py:module", None)
            else:
                context["py:module"] = previous
        children = list(holder.children)
        return [nodes.container("", *children)] if len(children) != 1 else children


# -- references to re-exported names ----------------------------------------------------


def _public_map() -> dict[str, tuple[str, str]]:
    """``{short or package-qualified name: (role, full target)}`` for the public names."""
    found: dict[str, tuple[str, str]] = {}
    for package_name in PUBLIC_PACKAGES:
        package = importlib.import_module(package_name)
        for name in getattr(package, "__all__", ()):
            target = _public_target(package, name)
            if target is None:
                continue
            role, full, _module = target
            found.setdefault(name, (role, full))
            found[f"{package_name}.{name}"] = (role, full)
    return found


def _resolve_public_name(
    app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.Element
) -> Optional[nodes.Element]:
    """Resolve a Python reference that failed by its public name.

    ``sgcache_layers.Session`` is documented as ``sgcache_layers.session.Session``; a
    docstring in one module may name a class of another by its short name
    (``:class:`MemoryCache```).  Both are looked up among the packages' ``__all__``.
    """
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", ""))
    public = _public_map()
    entry = public.get(target)
    if entry is None and "." in target:
        # "Cache.get" or "sgcache_layers.Session.sync": resolve the head, keep the tail.
        head, _, tail = target.rpartition(".")
        found = public.get(head)
        if found is not None:
            entry = (found[0], f"{found[1]}.{tail}")
    if entry is None:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(  # type: ignore[no-any-return]
        env, node["refdoc"], app.builder, node["reftype"], entry[1], node, contnode
    )


# -- napoleon and attribute docstrings ---------------------------------------------------


def _keep_attribute_colons(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Stop napoleon reading ``"text: more"`` in an attribute docstring as ``type: text``.

    Napoleon splits the first line of an attribute, property or data docstring at its
    first colon and shows the left part as the type.  This project writes types as
    annotations and uses colons in prose ("Answers served without ShotGrid: ..."), so an
    empty reST comment is put in front before napoleon runs: napoleon takes that as the
    first line, finds no colon in it, and leaves the real text alone.
    """
    if what in ("attribute", "property", "data") and lines and lines[0].strip():
        lines[0:0] = ["..", ""]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("sgcl-cli-help", CliHelp)
    app.add_directive("sgcl-public-names", PublicNames)
    app.connect("autodoc-process-docstring", _keep_attribute_colons, priority=400)
    app.connect("missing-reference", _resolve_public_name)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
