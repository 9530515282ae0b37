"""Checks that the DVC cache and the committed results tell the truth.

* :func:`missing_deps`: every module of ``src/defocus`` that a stage script
  imports, directly or through other modules (its import closure), and
  ``requirements.lock`` must be among the stage's deps in ``dvc.yaml``;
  otherwise editing that module would leave ``dvc status`` clean and the stage's
  outputs stale.
* :func:`out_of_sync`: the hashes ``dvc.lock`` records for the git-tracked
  deps (code, params) and the git-tracked outputs (``reports/``) must be those
  of the committed files: a commit that changes code or params carries the
  re-run's ``dvc.lock`` and ``reports/``.

The test suite runs both on the repository (so CI does).
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

PACKAGE = "defocus"
LOCKFILE = "requirements.lock"


def _module_file(src: Path, name: str) -> Path | None:
    """The file of module ``defocus.x.y`` under ``src`` (None if not a package module)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = src.joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports(path: Path, src: Path) -> set[Path]:
    """Package modules ``path`` imports (at any depth of its code, relative or absolute)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    # the package a relative import starts from: the module's folder (for __init__.py too)
    package = list(path.relative_to(src).parts[:-1]) if path.is_relative_to(src) else []
    found: set[Path] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]  # `from . import x` imports module x
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                f = _module_file(src, ".".join(parts[:i]))
                if f is not None:
                    found.add(f)
    return found


def import_closure(script: str | Path, src: str | Path = "src") -> set[Path]:
    """Package modules that running ``script`` may import, transitively (paths under ``src``)."""
    src = Path(src)
    todo, seen = [Path(script)], set()
    while todo:
        found = _imports(todo.pop(), src)
        # a subpackage may choose its modules at run time (defocus.backend imports one per
        # Keras backend): importing it counts as importing all of them
        found |= {m for f in found if f.name == "__init__.py" and f.parent.parent != src
                  for m in f.parent.glob("*.py")}
        for f in found:
            if f not in seen:
                seen.add(f)
                todo.append(f)
    return seen


def stage_script(cmd: str) -> str | None:
    """The ``stages/*.py`` script a stage command runs."""
    for token in shlex.split(cmd if isinstance(cmd, str) else " ".join(cmd)):
        if token.endswith(".py"):
            return token
    return None


def _stages(repo: Path) -> dict[str, dict]:
    """dvc.yaml's stages, ``foreach`` expanded as DVC names them (``name@key``): ``${key}``,
    ``${item}`` and ``${item.field}`` are replaced."""
    import re

    doc = yaml.safe_load((repo / "dvc.yaml").read_text())
    out = {}
    for name, st in doc["stages"].items():
        if "foreach" not in st:
            out[name] = st
            continue
        items = st["foreach"]
        pairs = [(v, v) for v in items] if isinstance(items, list) else list(items.items())
        for key, item in pairs:
            def value(m, key=key, item=item):
                field = m.group(1)
                if field == "key":
                    return str(key)
                if field == "item":
                    return str(item)
                return str(item[field.split(".", 1)[1]])

            text = re.sub(r"\$\{\s*(key|item(?:\.\w+)?)\s*\}", value, yaml.safe_dump(st["do"]))
            out[f"{name}@{key}"] = yaml.safe_load(text)
    return out


def missing_deps(repo: str | Path = ".") -> dict[str, list[str]]:
    """Per stage, the files of its import closure (and requirements.lock) that its deps lack."""
    repo = Path(repo)
    missing = {}
    for name, st in _stages(repo).items():
        script = stage_script(st["cmd"])
        if script is None:
            continue
        deps = {str(Path(d)) for d in st.get("deps", [])}
        need = {script, LOCKFILE} | {str(f.relative_to(repo)) for f in import_closure(repo / script, repo / "src")}
        lacking = sorted(f for f in need if f not in deps and not any(f.startswith(d.rstrip("/") + "/") for d in deps))
        if lacking:
            missing[name] = lacking
    return missing


def _tracked(repo: Path) -> set[str]:
    res = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True)
    return set(res.stdout.split())


def out_of_sync(repo: str | Path = ".", dvc: str | None = None) -> list[str]:
    """What ``dvc status`` finds changed among git-tracked deps, params and outputs,
    and changed stage commands; empty when the committed results are the committed code's.

    Outputs that only DVC tracks (``data/``) are not in a fresh clone and are ignored,
    and so is the always-changed ``machine`` stage's re-run.
    """
    repo = Path(repo)
    dvc = dvc or str(Path(sys.executable).with_name("dvc"))
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    res = subprocess.run([dvc, "status", "--json"], cwd=repo, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"dvc status failed: {res.stderr.strip()}")
    status = json.loads(res.stdout or "{}")
    tracked = _tracked(repo)
    problems = []
    for stage, changes in status.items():
        for change in changes:
            if change == "always changed" or not isinstance(change, dict):
                continue
            for kind, entries in change.items():
                if kind == "changed command":
                    problems.append(f"{stage}: its command changed")
                    continue
                for path, what in (entries.items() if isinstance(entries, dict) else []):
                    if isinstance(what, dict):  # params file: {param: modified/new/deleted}
                        problems += [f"{stage}: param {p} {w} in {path}" for p, w in what.items()]
                    elif path in tracked or any(t.startswith(path.rstrip("/") + "/") for t in tracked):
                        if what != "deleted" or path in tracked:
                            problems.append(f"{stage}: {kind.split()[-1][:-1]} {path} {what}")
    return sorted(set(problems))
