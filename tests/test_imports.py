"""Imports stay light and complete: lazy packages, a quiet pytest plugin, ``python -m``.

pytest loads the ``sgcache_layers`` plugin in every run of an environment that has the
package, so loading it must not drag in the library.  The checks that depend on what a
fresh interpreter has imported run in subprocesses.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import sgcache_layers
import sgcache_layers.testing

#: Where each public name of the package is defined (what ``__init__`` imported eagerly).
PUBLIC: Dict[str, List[str]] = {
    "sgcache_layers.cache": [
        "Cache",
        "CacheBackendError",
        "LayeredCache",
        "LRUMemoryCache",
        "MemoryCache",
        "ProxyCache",
        "SerialisedCache",
    ],
    "sgcache_layers.codec": ["CodecError"],
    "sgcache_layers.detached": ["DetachedError"],
    "sgcache_layers.entity": ["NOT_SET", "Entity", "RetiredEntityError"],
    "sgcache_layers.file": ["FileCache"],
    "sgcache_layers.keys": ["KeyMaker", "ObjectKeyMaker", "StringKeyMaker"],
    "sgcache_layers.memoise": ["Memoiser", "memoise", "memoise_decorator"],
    "sgcache_layers.pool": ["ShotgunPool"],
    "sgcache_layers.query": ["QueryError"],
    "sgcache_layers.redis": ["RedisCache"],
    "sgcache_layers.session": ["OfflineError", "Session", "SessionConfigError", "SessionStats"],
    "sgcache_layers.warming": ["WarmError"],
}

#: The same for ``sgcache_layers.testing``.
TESTING_PUBLIC: Dict[str, List[str]] = {
    "sgcache_layers.testing.data": [
        "demo_schema",
        "ensure_required_entities",
        "generate_production",
        "load_schema",
    ],
    "sgcache_layers.testing.server": [
        "FAULT_KINDS",
        "FaultRule",
        "RequestRecord",
        "ScriptIdentity",
        "ShotgridServer",
        "lognormal_latency",
    ],
    "sgcache_layers.testing.store": ["Actor", "SiteError", "SiteStore"],
}

#: Modules that must not be loaded just because the plugin or the package was imported.
HEAVY = ["shotgun_api3", "diskcache", "redis", "orjson", "tqdm"]


def _python(code: str, *args: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)] if code else [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def _modules_after(statement: str) -> List[str]:
    """The names in ``sys.modules`` of a fresh interpreter after running *statement*."""
    result = _python(f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    modules: List[str] = json.loads(result.stdout.splitlines()[-1])
    return modules


def _loaded(modules: List[str], roots: List[str]) -> List[str]:
    """The entries of *modules* that are one of *roots* or inside one of them."""
    return [m for m in modules if any(m == root or m.startswith(root + ".") for root in roots)]


def test_loading_the_pytest_plugin_imports_nothing_heavy() -> None:
    modules = _modules_after("import sgcache_layers.testing.pytest_plugin")
    assert _loaded(modules, HEAVY) == []
    ours = _loaded(modules, ["sgcache_layers"])
    plugin = "sgcache_layers.testing.pytest_plugin"
    assert ours == ["sgcache_layers", "sgcache_layers.testing", plugin]
    # Named explicitly: the modules whose import cost this was about.
    for name in ("sgcache_layers.session", "sgcache_layers.testing.server"):
        assert name not in modules


def test_import_sgcache_layers_alone_imports_no_dependency() -> None:
    modules = _modules_after("import sgcache_layers")
    assert _loaded(modules, ["redis", "shotgun_api3", "diskcache"]) == []
    assert _loaded(modules, ["sgcache_layers"]) == ["sgcache_layers"]


def test_import_sgcache_layers_testing_does_not_start_the_server_stack() -> None:
    modules = _modules_after("import sgcache_layers.testing")
    assert _loaded(modules, HEAVY) == []
    assert _loaded(modules, ["sgcache_layers"]) == ["sgcache_layers", "sgcache_layers.testing"]


def test_a_pytest_run_loads_the_plugin_without_the_library(tmp_path: Path) -> None:
    """What every pytest run of an environment with the package pays: just the plugin."""
    (tmp_path / "test_probe.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            def test_probe(request):
                assert request.config.pluginmanager.has_plugin("sgcache_layers")
                heavy = {HEAVY + ["sgcache_layers.session", "sgcache_layers.testing.server"]!r}
                loaded = [m for m in heavy if m in sys.modules]
                assert loaded == []
            """
        ),
        encoding="utf-8",
    )
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_probe.py"]
    result = _python("", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.parametrize(
    ("package", "public"),
    [(sgcache_layers, PUBLIC), (sgcache_layers.testing, TESTING_PUBLIC)],
    ids=["sgcache_layers", "sgcache_layers.testing"],
)
def test_every_public_name_is_the_object_its_module_defines(
    package: types.ModuleType, public: Dict[str, List[str]]
) -> None:
    names = {name for names in public.values() for name in names}
    extra = {"__version__"} if package is sgcache_layers else set()
    assert sorted(package.__all__) == sorted(names | extra)
    assert set(package.__all__) <= set(dir(package))
    for module_name, defined in public.items():
        module = importlib.import_module(module_name)
        for name in defined:
            assert getattr(package, name) is getattr(module, name), name
            namespace: Dict[str, object] = {}
            exec(f"from {package.__name__} import {name} as value", namespace)
            assert namespace["value"] is getattr(module, name), name


def test_star_import_gives_every_public_name() -> None:
    namespace: Dict[str, object] = {}
    exec("from sgcache_layers import *", namespace)
    assert set(sgcache_layers.__all__) <= set(namespace)
    assert namespace["Session"] is importlib.import_module("sgcache_layers.session").Session


def test_dir_lists_the_public_names_before_any_is_used() -> None:
    result = _python(
        """
        import json, sgcache_layers, sgcache_layers.testing
        print(json.dumps([dir(sgcache_layers), dir(sgcache_layers.testing)]))
        """
    )
    assert result.returncode == 0, result.stderr
    package_dir, testing_dir = json.loads(result.stdout)
    assert set(sgcache_layers.__all__) <= set(package_dir)
    assert set(sgcache_layers.testing.__all__) <= set(testing_dir)


_MEMOISE_CHECK = """
    import sys, types
    import sgcache_layers
    decorator = sgcache_layers.memoise
    submodule = sys.modules["sgcache_layers.memoise"]
    assert isinstance(submodule, types.ModuleType)
    assert not isinstance(decorator, types.ModuleType)
    assert decorator is submodule.memoise
    from sgcache_layers import memoise
    assert memoise is submodule.memoise
    from sgcache_layers.memoise import Memoiser, memoiser
    assert isinstance(memoiser, Memoiser)
    calls = []

    @memoise
    def double(x):
        calls.append(x)
        return 2 * x

    assert (double(21), double(21), calls) == (42, 42, [21])
    print("ok")
"""


@pytest.mark.parametrize(
    "first",
    [
        "from sgcache_layers import memoise",
        "from sgcache_layers.memoise import Memoiser",
        "import sgcache_layers.memoise",
        "import sgcache_layers.memoise as m; assert not isinstance(m, type(sys))",
        "from sgcache_layers import Memoiser",  # the lazy import loads the submodule
        "from sgcache_layers import Session",
        "from sgcache_layers import *",
    ],
)
def test_memoise_is_the_decorator_whichever_import_comes_first(first: str) -> None:
    result = _python("import sys\n" + first + "\n" + textwrap.dedent(_MEMOISE_CHECK))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_memoise_can_be_monkeypatched_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    decorator = importlib.import_module("sgcache_layers.memoise").memoise
    assert sgcache_layers.memoise is decorator

    def replacement(function: object) -> object:
        return function

    monkeypatch.setattr(sgcache_layers, "memoise", replacement)
    assert sgcache_layers.memoise is replacement
    monkeypatch.undo()
    assert sgcache_layers.memoise is decorator


def test_submodules_are_attributes_after_a_bare_import() -> None:
    result = _python(
        """
        import sgcache_layers, sgcache_layers.testing
        assert sgcache_layers.keys.ObjectKeyMaker is sgcache_layers.ObjectKeyMaker
        assert sgcache_layers.testing.data.load_schema is sgcache_layers.testing.load_schema
        for missing in ("no_such_name", "_private", "no.such"):
            assert not hasattr(sgcache_layers, missing), missing
            assert not hasattr(sgcache_layers.testing, missing), missing
        try:
            sgcache_layers.Sesion
        except AttributeError as exc:
            assert str(exc) == "module 'sgcache_layers' has no attribute 'Sesion'", exc
        else:
            raise AssertionError("no AttributeError")
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ------------------------------------------------------------------------ python -m


def test_python_m_runs_the_cli() -> None:
    version = _python("", "-m", "sgcache_layers", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"sgcache-layers {sgcache_layers.__version__}"

    usage = _python("", "-m", "sgcache_layers", "--help")
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: sgcache-layers ")
    for command in ("demo", "serve", "stats", "clear"):
        assert command in usage.stdout


def test_python_m_runs_a_subcommand_and_its_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = _python("", "-m", "sgcache_layers", "stats", "--cache-dir", str(missing))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"sgcache-layers: error: cache directory {missing} does not exist\n"

    bare = _python("", "-m", "sgcache_layers")
    assert bare.returncode == 2
    assert bare.stderr.startswith("sgcache-layers: error: ")
    assert "Traceback" not in bare.stderr


def test_importing_main_does_not_run_the_cli() -> None:
    result = _python("import sgcache_layers.__main__")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def _module_imports() -> Dict[str, List[str]]:
    """Each module of the package and the package modules it imports at module level
    (imports inside functions or under ``if TYPE_CHECKING`` break no import order)."""
    import ast

    root = Path(sgcache_layers.__file__).parent
    graph: Dict[str, List[str]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = []
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "sgcache_layers"
            ):
                found.append(str(node.module))
        graph[name] = found
    return graph


def test_no_import_circle_between_the_modules() -> None:
    graph = _module_imports()
    assert "sgcache_layers.session" in graph and "sgcache_layers.parts" in graph
    done: Dict[str, bool] = {}

    def visit(name: str, path: List[str]) -> None:
        if done.get(name):
            return
        assert name not in path, " -> ".join(path[path.index(name) :] + [name])
        for imported in graph.get(name, []):
            if imported in graph:
                visit(imported, path + [name])
        done[name] = True

    for name in graph:
        visit(name, [])
