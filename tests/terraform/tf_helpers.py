"""Shared helpers for the Terraform tests: python-hcl2 parsing that copes with the output formats in use.

Two distributions install a top-level ``hcl2`` package: python-hcl2 (a dev dependency) and checkov's fork
bc-python-hcl2, which wraps every attribute value in a one-element list. Whichever was installed last wins,
so the format is detected once with a probe and ``attr()`` unwraps accordingly.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TF_ROOT = REPO_ROOT / "terraform"
MODULES_DIR = TF_ROOT / "modules"
PLATFORM_DIR = MODULES_DIR / "platform"  # the composition: every module call; each env calls only this module
ENVS_DIR = TF_ROOT / "envs"
ENVS = ("dev", "staging", "prod")
K8S_BASE = REPO_ROOT / "k8s" / "base"

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed (dev dependency)")


def _unquote(value: Any) -> Any:
    """Strip the quotes that some python-hcl2 versions keep around string literals and keys."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items()}
    return value


def _detect_wrapped() -> bool:
    probe = hcl2.loads('a = "x"\nb = ["y"]\n')
    probe = _unquote(probe)
    if probe.get("a") == ["x"] and probe.get("b") == [["y"]]:
        return True
    if probe.get("a") == "x" and probe.get("b") == ["y"]:
        return False
    raise AssertionError(f"unknown python-hcl2 output format: {probe!r}")


WRAPPED = _detect_wrapped()
_MISSING = object()


def load_hcl(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return _unquote(hcl2.load(fh))


def attr(body: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    """Value of attribute ``key`` of a block body (or of a tfvars file)."""
    if key not in body:
        if default is _MISSING:
            raise KeyError(
                f"attribute {key!r} not set (have {sorted(k for k in body if not k.startswith('__'))})"
            )
        return default
    value = body[key]
    if WRAPPED and isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def blocks(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Nested blocks named ``key`` (e.g. ``taint``) of a block body."""
    found = body.get(key, [])
    if isinstance(found, dict):
        return [found]
    return list(found)


def strip_meta(value: Any) -> Any:
    """Drop python-hcl2's __start_line__/__end_line__ keys, recursively."""
    if isinstance(value, dict):
        return {k: strip_meta(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith("__"))}
    if isinstance(value, list):
        return [strip_meta(v) for v in value]
    return value


def tf_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.tf"))


def parse_dir(directory: Path) -> dict[str, list[Any]]:
    """Merge the top-level blocks of every .tf file of a directory (like Terraform does)."""
    merged: dict[str, list[Any]] = {}
    for path in tf_files(directory):
        for key, value in load_hcl(path).items():
            merged.setdefault(key, []).extend(value)
    return merged


def resources(
    parsed: dict[str, list[Any]], rtype: str | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in parsed.get("resource", []):
        for type_, named in entry.items():
            if rtype is not None and type_ != rtype:
                continue
            for name, body in named.items():
                out[(type_, name)] = body
    return out


def named_blocks(parsed: dict[str, list[Any]], kind: str) -> dict[str, dict[str, Any]]:
    """``variable``/``module``/``output`` blocks by name."""
    out: dict[str, dict[str, Any]] = {}
    for entry in parsed.get(kind, []):
        for name, body in entry.items():
            if name.startswith("__"):
                continue
            out[name] = body
    return out


def locals_of(parsed: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for body in parsed.get("locals", []):
        for key in body:
            if not key.startswith("__"):
                out[key] = attr(body, key)
    return out


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${")


def var_ref(value: Any) -> str | None:
    """Name of the variable when ``value`` is exactly ``var.NAME``."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{var\.([A-Za-z0-9_]+)\}", value)
        if match:
            return match.group(1)
    return None


def module_dirs() -> list[Path]:
    return sorted(p for p in MODULES_DIR.iterdir() if p.is_dir())


def env_dir(env: str) -> Path:
    return ENVS_DIR / env


def load_tfvars(env: str) -> dict[str, Any]:
    path = env_dir(env) / "terraform.tfvars"
    raw = load_hcl(path)
    return {k: attr(raw, k) for k in raw if not k.startswith("__")}


def load_settings(env: str) -> dict[str, Any]:
    """The ``settings`` object of envs/<env>/terraform.tfvars (passed straight to modules/platform)."""
    return load_tfvars(env)["settings"]


def platform_calls() -> dict[str, dict[str, Any]]:
    """The module calls of modules/platform (the calls every environment makes through it)."""
    return named_blocks(parse_dir(PLATFORM_DIR), "module")


def object_type_attributes(path: Path, variable: str) -> dict[str, str]:
    """Top-level attribute -> type expression of ``variable "<variable>" { type = object({...}) }`` in ``path``.

    Read from the source text (python-hcl2 and checkov's fork render type expressions differently); expects
    terraform fmt's layout, one attribute a line.
    """
    text = path.read_text()
    start = re.search(rf'^variable "{re.escape(variable)}" {{\n\s*type\s*=\s*object\(\{{\n', text, re.M)
    assert start, f"{path}: variable {variable} is not an object type"
    attributes: dict[str, str] = {}
    depth = 0
    for line in text[start.end() :].splitlines():
        code = line.split("#", 1)[0].strip()
        if depth == 0 and code.startswith("})"):
            return attributes
        if depth == 0 and "=" in code:
            name, _, type_expr = code.partition("=")
            attributes[name.strip()] = type_expr.strip()
        depth += code.count("(") + code.count("{") + code.count("[")
        depth -= code.count(")") + code.count("}") + code.count("]")
    raise AssertionError(f"{path}: variable {variable}: unterminated object type")


def optional_default(type_expr: str) -> Any:
    """Default of ``optional(T, DEFAULT)`` for a literal bool/number/string default; _MISSING when required."""
    match = re.fullmatch(r"optional\((.*)\)", type_expr)
    if not match:
        return _MISSING
    inner = match.group(1)
    depth = 0
    for i, ch in enumerate(inner):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            return attr(_unquote(hcl2.loads(f"x = {inner[i + 1 :].strip()}\n")), "x")
    return None  # optional(T) without a default: null


def is_required(type_expr: str) -> bool:
    return not type_expr.startswith("optional(")


@functools.cache
def names_locals() -> dict[str, Any]:
    """The locals of terraform/modules/names: the one place the shared names are defined."""
    return locals_of(parse_dir(MODULES_DIR / "names"))
