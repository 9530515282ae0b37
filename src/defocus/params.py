"""``params.yaml``: reading it, and switching its sizes to a profile.

A profile (``profiles/tiny.yaml``, ``profiles/paper.yaml``) is a YAML file with
the same sections as ``params.yaml`` holding only the values it changes.
:func:`apply_profile` writes those values into ``params.yaml`` in place, line
by line, so its comments and order stay as they are.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

PARAMS = Path("params.yaml")


def load_params(path: str | Path = PARAMS) -> dict:
    """The parameters as a dict (sections are dicts)."""
    with open(path) as f:
        return yaml.safe_load(f)


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _dump(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<sep> *)(?P<value>(?:[^#\s].*?)?)(?P<comment>\s+#.*)?$")


def apply_profile(profile: str | Path | dict, params_path: str | Path = PARAMS) -> list[str]:
    """Write a profile's values into ``params.yaml``; returns the dotted keys changed.

    Raises ``KeyError`` for a profile key that ``params.yaml`` does not have.
    """
    if not isinstance(profile, dict):
        with open(profile) as f:
            profile = yaml.safe_load(f) or {}
    wanted = _flatten(profile)
    path = Path(params_path)
    lines = path.read_text().splitlines(keepends=True)
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing sections
    done = set()
    for i, line in enumerate(lines):
        m = _LINE.match(line.rstrip("\n"))
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [m["key"]])
        if m["value"] == "":
            stack.append((indent, m["key"]))
            if key in wanted and not isinstance(wanted[key], dict):
                raise KeyError(f"{path}: {key} is a section, the profile gives it a value")
            continue
        inside = sorted(k for k in wanted if k.startswith(key + "."))
        if key in wanted or inside:
            value = wanted[key] if key in wanted else yaml.safe_load(m["value"]) or {}
            for k in inside:  # keys of a flow mapping such as `urls: {}`
                value[k[len(key) + 1 :]] = wanted[k]
            head = f"{m['indent']}{m['key']}:{m['sep'] or ' '}{_dump(value)}"
            comment = (m["comment"] or "").lstrip()
            if comment:  # keep the comment's column where there is room
                column = len(line.rstrip("\n")) - len(comment)
                head = head.ljust(column - 1) + " "
            lines[i] = f"{head}{comment}\n"
            done.update([key, *inside] if key in wanted else inside)
    missing = sorted(set(wanted) - done)
    if missing:
        raise KeyError(f"{path} has no key(s) {', '.join(missing)}")
    text = "".join(lines)
    check = _flatten(yaml.safe_load(text))
    for k, v in wanted.items():
        if check.get(k) != v:
            raise ValueError(f"{path}: could not set {k} to {v!r}")
    path.write_text(text)
    return sorted(done)
