"""The dependency direction of ARCHITECTURE.md, checked on every import in the tree.

Components are processes first: the apiserver, the scheduler, the controller manager,
the kubelet loop and the proxy each import only ``apiclient`` (the shared client library)
and themselves; only ``keelson/`` (the composition root) wires them together. ``bench/``
drives the components through their public entry points: a component package's own
top-level names (``from proxy import run_proxy``), never its modules' internals.

Every import counts, also one inside a function (lazy imports are still dependencies).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("apiserver", "scheduler", "controllers", "nodeagent", "proxy")
PACKAGES = ("apiclient", "keelson", *COMPONENTS)

# package -> the first-party packages it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "apiclient": frozenset(),
    **{component: frozenset({"apiclient"}) for component in COMPONENTS},
    "keelson": frozenset(PACKAGES),
}
FIRST_PARTY = frozenset({*PACKAGES, "bench", "tests"})


def _imports(path: Path, module: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target, [alias.name for alias in node.names]


def _modules(root: Path, top: str) -> Iterator[tuple[Path, str]]:
    for path in sorted((root / top).rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        yield path, ".".join(relative.parts)


def forbidden_imports(root: Path) -> list[str]:
    """Every import in ``root`` that breaks the dependency rules, as readable lines."""
    problems: list[str] = []
    for top, allowed in ALLOWED.items():
        for path, module in _modules(root, top):
            for line, target, _names in _imports(path, module):
                first = target.split(".")[0]
                if first in FIRST_PARTY and first != top and first not in allowed:
                    problems.append(f"{path.relative_to(root)}:{line}: {top} imports {target}")
    for path, module in _modules(root, "bench"):
        for line, target, names in _imports(path, module):
            first, _, rest = target.partition(".")
            if first in COMPONENTS and (rest or any(n.startswith("_") for n in names)):
                problems.append(f"{path.relative_to(root)}:{line}: bench imports {target} "
                                f"{names} (use the package's public names: from {first} "
                                "import ...)")
    return problems


def test_the_tree_keeps_the_dependency_rules() -> None:
    assert forbidden_imports(REPO) == []


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(("relative", "text", "expected"), [
    ("apiserver/app.py", "from scheduler import Scheduler\n", "apiserver imports scheduler"),
    ("apiserver/app.py", "def f():\n    import controllers.deployment\n",
     "apiserver imports controllers.deployment"),
    ("nodeagent/agent.py", "from proxy.app import run_proxy\n", "nodeagent imports proxy.app"),
    ("proxy/app.py", "from nodeagent import netlink\n", "proxy imports nodeagent"),
    ("scheduler/cache.py", "from controllers.ownership import claim\n",
     "scheduler imports controllers.ownership"),
    ("controllers/gc.py", "from apiserver.status import StatusError\n",
     "controllers imports apiserver.status"),
    ("apiclient/client.py", "from keelson.cli import main\n", "apiclient imports keelson.cli"),
    ("apiserver/handlers/x.py", "from ...nodeagent import api\n", "apiserver imports nodeagent"),
    ("bench/b.py", "from proxy.proxier import Proxier\n", "bench imports proxy.proxier"),
    ("bench/b.py", "from proxy import _private\n", "bench imports proxy"),
])
def test_a_forbidden_import_is_reported(tmp_path: Path, relative: str, text: str,
                                        expected: str) -> None:
    for top in (*PACKAGES, "bench"):
        _write(tmp_path, f"{top}/__init__.py", "")
    _write(tmp_path, relative, text)
    problems = forbidden_imports(tmp_path)
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(("relative", "text"), [
    ("scheduler/cache.py", "from apiclient.pods import is_terminal\n"),
    ("controllers/x.py", "from controllers.ownership import claim\nfrom . import base\n"),
    ("keelson/cli.py", "from apiserver.app import serving\nfrom scheduler import run\n"),
    ("bench/b.py", "from proxy import run_proxy\nfrom apiclient.client import ApiClient\n"),
])
def test_an_allowed_import_is_not_reported(tmp_path: Path, relative: str, text: str) -> None:
    for top in (*PACKAGES, "bench"):
        _write(tmp_path, f"{top}/__init__.py", "")
    _write(tmp_path, relative, text)
    assert forbidden_imports(tmp_path) == []
