"""Resolving the element set of a build, with diskimage-builder's rules, on a networkx graph.

Rules (diskimage-builder's ``element_dependencies``):

* ``element-deps`` are followed transitively; cycles are harmless.
* A name that some expanded element lists in ``element-provides`` is satisfied by it
  and is not looked up as an element.
* Exactly one element may provide any name; ``operating-system`` must be provided.
* A name the user asked for must not be provided by another element.
* New in dibpy: ``element-conflicts`` - two conflicting elements in one build are an error.
* New in dibpy: an element with an ``element-obsolete`` file is an error naming what
  replaced it when the user names it.  Reached only through ``element-deps`` entries
  (diskimage-builder's ``ramdisk`` depends on the long-unused ``deploy-tgtadm``), it is
  a warning instead: the stub stays in the set and, having no hook directories (else it
  is the error still), does nothing.
  One with an ``element-renamed`` file stands for its new name, with a warning.

All problems found are reported together.  The result is sorted by name, so it is
deterministic whatever order the arguments or files came in.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import networkx as nx

from dibpy.elements.discovery import ElementLibrary
from dibpy.elements.model import Element
from dibpy.errors import ElementError, MultiError, did_you_mean

OPERATING_SYSTEM = "operating-system"

LOG = logging.getLogger("dibpy")


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a build's elements."""

    requested: tuple[str, ...]
    elements: tuple[Element, ...]
    #: provided name -> the element providing it
    provided_by: dict[str, str]
    graph: nx.DiGraph
    #: old element name -> the new name it was resolved as (``element-renamed``)
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.elements]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.elements)


def default_elements(
    requested: Sequence[str],
    *,
    skip_base: bool = False,
    arch: str = "amd64",
    ramdisk_element: str | None = None,
) -> list[str]:
    """Apply diskimage-builder's argument defaults to the user's element list.

    ``base`` is prepended unless ``skip_base``; in ramdisk mode the ramdisk element too;
    ``vm`` without any ``block-device-*`` gets ``block-device-mbr`` (``-efi`` on arm64).
    """
    out: list[str] = []
    if not skip_base:
        out.append("base")
    if ramdisk_element:
        out.append(ramdisk_element)
    out.extend(requested)
    if "vm" in out and not any(e.startswith("block-device-") for e in out):
        out.append("block-device-efi" if arch in ("arm64", "aarch64") else "block-device-mbr")
    # keep the first of any repeated name
    seen: set[str] = set()
    return [e for e in out if not (e in seen or seen.add(e))]  # type: ignore[func-returns-value]


def follow_rename(name: str, library: ElementLibrary) -> tuple[str, list[str]]:
    """The name ``name`` stands for after following ``element-renamed`` files, and the
    chain of old names passed through (empty when it is not renamed)."""
    chain: list[str] = []
    while name in library:
        new = library[name].renamed_to
        if new is None:
            break
        if name in chain or len(chain) > 20:
            raise ElementError(
                f"element {chain[0]!r}: element-renamed files form a loop: "
                + " -> ".join([*chain, name]),
                hint="one of the element-renamed files must name a real element",
            )
        chain.append(name)
        name = new
    return name, chain


def _rename(name: str, library: ElementLibrary, renamed: dict[str, str], by: str) -> str:
    if name in renamed:
        return renamed[name]
    new, chain = follow_rename(name, library)
    if chain:
        renamed[name] = new
        where = f" (an element-deps entry of {by})" if by else ""
        LOG.warning(
            "element %r%s was renamed to %r; using %r (name it so to silence this)",
            name,
            where,
            new,
            new,
        )
    return new


def resolve(
    requested: Sequence[str],
    library: ElementLibrary,
    *,
    require_os: bool = True,
) -> Resolution:
    """Expand ``requested`` into the full element set, or raise one error naming every problem."""
    problems: list[str] = []
    graph = nx.DiGraph()
    provided_by: dict[str, list[str]] = {}
    final: set[str] = set()
    queue: deque[str] = deque()
    wanted_by: dict[str, str] = {}
    renamed: dict[str, str] = {}

    requested = [_rename(n, library, renamed, "") for n in requested]
    for name in requested:
        if name not in final:
            final.add(name)
            queue.append(name)

    provided: set[str] = set()
    missing: list[str] = []
    while queue:
        name = queue.popleft()
        if name in provided:
            continue
        if name not in library:
            # judged at the end: an element expanded later may provide it
            missing.append(name)
            continue
        el = library[name]
        if el.obsolete is not None:
            # a stub with hook directories would not be a no-op: an error, as if named
            if name in requested or any(c.is_dir() for c in el.path.iterdir()):
                via = "" if name in requested else f" (an element-deps entry of {wanted_by[name]})"
                problems.append(f"element {name!r}{via} is obsolete: {el.obsolete}")
                continue
            LOG.warning(
                "element %r (an element-deps entry of %s) is obsolete: %s; it does nothing",
                name,
                wanted_by[name],
                el.obsolete,
            )
        graph.add_node(name, kind="element", path=str(el.path))
        for p in sorted(el.provides):
            provided_by.setdefault(p, []).append(name)
            # a depends edge may have added the node already, without its kind
            if graph.nodes.get(p, {}).get("kind") != "element":
                graph.add_node(p, kind="provided")
            graph.add_edge(name, p, kind="provides")
        provided |= el.provides
        for dep in sorted(_rename(d, library, renamed, name) for d in el.depends):
            graph.add_edge(name, dep, kind="depends")
            wanted_by.setdefault(dep, name)
            if dep not in final and dep not in provided:
                queue.append(dep)
            final.add(dep)

    for name in missing:
        if name in provided:
            continue
        by = wanted_by.get(name)
        where = f" (an element-deps entry of {by})" if by else ""
        hint = did_you_mean(name, library.elements)
        problems.append(f"element {name!r}{where} not found" + (f"; {hint}" if hint else ""))
    for name in requested:
        if name in provided:
            who = ", ".join(sorted(provided_by[name]))
            problems.append(
                f"element {name!r} was requested, but element {who} already provides it"
            )
    for p, providers in sorted(provided_by.items()):
        if len(providers) > 1:
            problems.append(
                f"{p!r} is provided by more than one element: {', '.join(sorted(providers))}"
            )
    if require_os and OPERATING_SYSTEM not in provided and not problems:
        problems.append("no element provides 'operating-system'")

    names = sorted(
        n
        for n in (final - provided) & set(library.elements)
        if library[n].obsolete is None or n not in requested
    )
    chosen = set(names)
    for name in names:
        for other in sorted(library[name].conflicts & chosen):
            if name < other or name not in library[other].conflicts:
                problems.append(f"elements {name!r} and {other!r} conflict (element-conflicts)")

    if problems:
        hint = None
        if any("operating-system" in p for p in problems):
            hint = "add an operating-system element such as debian-minimal, ubuntu or centos"
        elif any("not found" in p for p in problems):
            hint = "check the name, or add its directory to ELEMENTS_PATH"
        if len(problems) == 1:
            raise ElementError(problems[0], hint)
        raise MultiError(problems, hint)

    return Resolution(
        requested=tuple(requested),
        elements=tuple(library[n] for n in names),
        provided_by={p: v[0] for p, v in provided_by.items()},
        graph=graph,
        renamed=renamed,
    )


def to_dot(res: Resolution) -> str:
    """The dependency graph (deps and provides) in Graphviz DOT."""
    lines = ["digraph elements {", "  rankdir=LR;", '  node [shape=box, fontname="sans"];']
    for node, data in sorted(res.graph.nodes(data=True)):
        if data.get("kind") == "provided" and node not in res.names:
            lines.append(f'  "{node}" [shape=ellipse, style=dashed];')
        else:
            lines.append(f'  "{node}";')
    for a, b, data in sorted(res.graph.edges(data=True)):
        style = ' [style=dashed, label="provides"]' if data.get("kind") == "provides" else ""
        lines.append(f'  "{a}" -> "{b}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"
