"""Declared element parameters: the variables an element reads, from its parameters.yaml.

An element may carry a ``parameters.yaml`` beside its README: a mapping of variable
name to ``{type, default, choices, description, required}`` (doc/element-parameters.md).
The file is checked against ``dibpy/schemas/element-parameters.json``; each declared
variable set in the build's environment is checked against its type before anything
runs.  An element without the file is not checked at all (diskimage-builder's elements
keep working as they are).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jsonschema
import yaml

from dibpy.errors import ElementError, did_you_mean

FILENAME = "parameters.yaml"
SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "element-parameters.json"
TYPES = ("string", "integer", "boolean", "enum", "size", "list", "path")

_INTEGER = re.compile(r"^\s*[+-]?[0-9]+\s*$")
_SIZE = re.compile(r"^\s*[0-9]+(?:\.[0-9]+)?\s*(?:[KMGTP]i?B?|[kmgtp]|B)?\s*$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Parameter:
    """One declared variable of one element."""

    name: str
    type: str
    description: str
    element: str
    default: str | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    min: int | None = None
    max: int | None = None
    #: an enum whose choices are the known values, not the only ones (a release name:
    #: a private mirror may have others): another value is a warning, an error with
    #: --strict
    open: bool = False

    @property
    def is_family(self) -> bool:
        """A name ending in ``_`` (``DIB_REPOTYPE_``) declares every variable it starts."""
        return self.name.endswith("_")

    def covers(self, var: str) -> bool:
        if self.is_family:
            return var.startswith(self.name) and len(var) > len(self.name)
        return var == self.name

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not a valid value of this parameter, or None."""
        v = value.strip()
        if self.type == "integer":
            if not _INTEGER.match(v):
                return "not an integer"
            n = int(v)
            if self.min is not None and n < self.min:
                return f"smaller than {self.min}"
            if self.max is not None and n > self.max:
                return f"larger than {self.max}"
        elif self.type == "boolean":
            if v.lower() not in _TRUE + _FALSE:
                return "not a yes/no value (use 1 or 0)"
        elif self.type == "enum":
            if v not in self.choices:
                near = did_you_mean(v, self.choices, n=1, quote=False)
                return f"not one of {', '.join(self.choices)}" + (f"; {near}" if near else "")
        elif self.type == "size":
            if not _SIZE.match(v):
                return "not a size (a number, optionally with a unit: 512M, 3G, 10GiB)"
        elif self.type == "list":
            if self.choices:
                bad = [i for i in re.split(r"[\s,]+", v) if i and i not in self.choices]
                if bad:
                    return f"{', '.join(bad)}: not one of {', '.join(self.choices)}"
        elif self.type == "path":
            if "\0" in value:
                return "not a path (contains a NUL byte)"
        return None


def _scalar(value: Any) -> str | None:
    """A YAML default as the environment would spell it (booleans as 1/0)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


class Element(Protocol):
    """What this module needs of an element (dibpy.elements.model.Element, which
    imports this module)."""

    @property
    def name(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, Parameter]: ...

    @property
    def environment_files(self) -> list[Path]: ...


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))


def _where(path: Iterable[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(top)"


def load(path: Path, element: str) -> dict[str, Parameter]:
    """The parameters declared in ``path`` (one element's parameters.yaml).

    A file that is not valid YAML, or not valid against the schema, is an ElementError
    naming the element, the file and the YAML path of the first problem."""
    try:
        data = yaml.safe_load(path.read_text(errors="replace"))
    except OSError as e:
        raise ElementError(f"element {element!r}: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ElementError(f"element {element!r}: {where}: invalid YAML: {what}") from None
    if data is None:
        return {}
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ElementError(
            f"element {element!r}: {path}: {_where(err.absolute_path)}: {err.message}{more}",
            hint="see doc/element-parameters.md for the format",
        )
    params = {}
    for name, decl in data.items():
        choices = tuple(str(c) for c in decl.get("choices", ()))
        default = _scalar(decl.get("default"))
        if decl["type"] == "enum" and default is not None and default not in choices:
            raise ElementError(
                f"element {element!r}: {path}: .{name}.default: {default!r} is not one of "
                f"its choices ({', '.join(choices)})",
                hint="see doc/element-parameters.md for the format",
            )
        params[name] = Parameter(
            name=name,
            type=decl["type"],
            description=" ".join(decl["description"].split()),
            element=element,
            default=default,
            choices=choices,
            required=bool(decl.get("required", False)),
            min=decl.get("min"),
            max=decl.get("max"),
            open=bool(decl.get("open", False)),
        )
    return params


def problems(
    elements: Sequence[Element],
    environ: Mapping[str, str],
    warnings: list[str] | None = None,
) -> list[str]:
    """One located line per declared variable of ``elements`` whose value in ``environ``
    is not valid (and per required one that is unset).  An empty value counts as unset,
    as the hooks' ``${VAR:-default}`` read it.  The same problem found by several
    elements' declarations is one line naming them all.  An ``open`` enum's unknown
    value goes to ``warnings`` instead (or is dropped when that is None)."""
    found: dict[str, list[str]] = {}  # the problem -> the elements that found it
    unknown: dict[str, list[str]] = {}  # the same, for open enums
    for e in elements:
        for p in e.parameters.values():
            if p.is_family:
                for var in sorted(v for v in environ if p.covers(v) and environ[v] != ""):
                    if why := p.problem(environ[var]):
                        found.setdefault(f"{var}={environ[var]!r}: {why}", []).append(e.name)
                continue
            value = environ.get(p.name, "")
            if value == "":
                if p.required:
                    what = f"{p.name} is required but not set: {p.description}"
                    found.setdefault(what, []).append(e.name)
                continue
            if why := p.problem(value):
                if p.open:
                    why = why.replace("not one of", "not a value known to be valid:", 1)
                (unknown if p.open else found).setdefault(f"{p.name}={value!r}: {why}", []).append(
                    e.name
                )
    if warnings is not None:
        warnings += _located(unknown)
    return _located(found)


def _located(found: Mapping[str, list[str]]) -> list[str]:
    out = []
    for what, names in found.items():
        who = f"element {names[0]!r}" if len(names) == 1 else "elements " + ", ".join(
            repr(n) for n in names
        )
        out.append(f"{who}: {what} ({FILENAME})")
    return out


@dataclass(frozen=True)
class Effective:
    """A parameter of a build with the value it takes and where the value comes from."""

    parameter: Parameter
    value: str | None
    #: "environment", "default", "environment.d (ELEMENT/FILE)", "unset" or what the
    #: caller said (``YAML file``)
    source: str
    #: the variable's name (a family's member, ``DIB_REPOTYPE_foo``; ``DIB_REPOTYPE_*``)
    variable: str = ""

    @property
    def name(self) -> str:
        return self.variable or self.parameter.name


#: ``export NAME=${NAME:-value}`` (a default) or ``export NAME=value`` (a fixed value), at
#: the top level of an environment.d file; anything inside a branch is not determinable
_ENV_DEFAULT = re.compile(r"^(?:export\s+)?([A-Za-z_]\w*)=\$\{\1:?-([^}$`\"']*)\}\s*$")
_ENV_FIXED = re.compile(r"^(?:export\s+)?([A-Za-z_]\w*)=([^\s$`\"';&|]+)\s*$")


def environment_d_values(elements: Sequence[Element]) -> dict[str, tuple[str, str, bool]]:
    """What the elements' environment.d files set, where it is plain enough to read:
    name -> (value, "ELEMENT/FILE", fixed).  ``fixed``: set whatever the environment
    says; otherwise only when the variable is unset or empty.  Later elements' files
    are sourced later, so they win, as in the build."""
    found: dict[str, tuple[str, str, bool]] = {}
    for e in elements:
        for f in e.environment_files:
            try:
                lines = f.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                if m := _ENV_DEFAULT.match(line):
                    found.setdefault(m.group(1), (m.group(2), f"{e.name}/{f.name}", False))
                elif m := _ENV_FIXED.match(line):
                    found[m.group(1)] = (m.group(2), f"{e.name}/{f.name}", True)
    return found


def effective(
    elements: Sequence[Element],
    environ: Mapping[str, str],
    sources: Mapping[str, str] | None = None,
) -> list[Effective]:
    """Every declared parameter of ``elements``, in element order, with the value the
    hooks will see and its source (the environment, an element's environment.d, the
    declared default).  ``sources`` names where some variables of ``environ`` came
    from instead of "environment" (the YAML front end's ``environment:`` keys)."""
    envd = environment_d_values(elements)
    sources = sources or {}
    out = []
    for e in elements:
        for p in e.parameters.values():
            if p.is_family:
                members = sorted(v for v in environ if p.covers(v) and environ[v] != "")
                out += [
                    Effective(p, environ[v], sources.get(v, "environment"), v) for v in members
                ]
                if not members:
                    out.append(Effective(p, None, "unset", p.name + "*"))
                continue
            value = environ.get(p.name, "")
            set_by = envd.get(p.name)
            if set_by is not None and (set_by[2] or value == ""):
                out.append(Effective(p, set_by[0], f"environment.d ({set_by[1]})"))
            elif value != "":
                out.append(Effective(p, value, sources.get(p.name, "environment")))
            elif p.default is not None:
                out.append(Effective(p, p.default, "default"))
            else:
                out.append(Effective(p, None, "unset"))
    return out
