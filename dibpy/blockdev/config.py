"""Reading, flattening and validating a block-device config; building its graph.

The format is diskimage-builder's: a YAML list of single-key maps ``{plugin: {...}}``,
in *graph* form (every node names its ``base``) or *tree* form (a plugin key nested in
another node makes a child).  Flattening rules:

* a missing ``base`` is the parent's name;
* a missing ``name`` is ``<plugin>_<base>``;
* plugin keys inside a ``partitioning``'s ``partitions[]`` entries become children of
  that partition.

Everything is checked before anything is made, and every problem is reported at once,
each with its YAML path (``config[2].partitioning.partitions[1].size``): the JSON schema
of each plugin, unknown plugins and keys (with a did-you-mean), multi-key entries,
missing and duplicate names, undefined bases, cycles, and each plugin's own checks
(labels, sizes that do not fit).  The nodes form a networkx DiGraph whose order is a
topological sort with a lexicographic tie-break, so it is the same on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import networkx as nx
import yaml

from dibpy.blockdev import dibcompat
from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.plugin import Node, RawNode, ValidationContext
from dibpy.blockdev.registry import plugins
from dibpy.errors import ConfigError, MultiError, did_you_mean
from dibpy.log import LOG

ROOT_MKFS = "mkfs_root"


class BlockDeviceConfigError(MultiError):
    """The block-device config is invalid; ``problems`` each start with a YAML path."""

    def __init__(self, problems: list[str], origin: str, hint: str | None = None) -> None:
        super().__init__(problems, hint)
        self.origin = origin
        head = f"invalid block-device config ({origin})"
        if len(self.problems) == 1:
            self.message = f"{head}: {self.problems[0]}"
        else:
            self.message = f"{head}: {len(self.problems)} problems:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        self.args = (self.message,)


@dataclass
class BlockDeviceConfig:
    """A validated config: its nodes, their graph and the order to create them in."""

    origin: str
    data: list[Any]
    nodes: dict[str, Node]
    graph: nx.DiGraph
    order: list[str]
    params: BlockDeviceParams
    #: what diskimage-builder accepts but looks wrong (unknown keys, odd values)
    warnings: list[str] = field(default_factory=list)


def _suggest(name: str, candidates: Any) -> str:
    """`` (did you mean 'x'?)`` to append to a problem, or ""."""
    near = did_you_mean(name, candidates, n=2)
    return f" ({near})" if near else ""


def parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise BlockDeviceConfigError(
            [f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}"], origin
        ) from None


def flatten(data: Any, plugin_names: set[str]) -> tuple[list[RawNode], list[str]]:
    """Tree form to graph form.  Returns the nodes and the problems found."""
    problems: list[str] = []
    out: list[RawNode] = []
    if not isinstance(data, list) or not data:
        return [], ["config: must be a non-empty list of single-key maps {plugin: {...}}"]

    def walk(plugin: str, body: Any, path: str, parent: str | None) -> None:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            problems.append(f"{path}: must be a mapping, not {type(body).__name__}")
            return
        own = {k: v for k, v in body.items() if k not in plugin_names}
        children = [(k, v) for k, v in body.items() if k in plugin_names]
        if "base" not in own and parent is not None:
            own["base"] = parent
        name = own.get("name")
        if name is None:
            base = own.get("base")
            if isinstance(base, str):
                name = f"{plugin}_{base}"
                own["name"] = name
            else:
                problems.append(
                    f"{path}: missing name"
                    + (" (a node with several bases needs one)" if base else "")
                )
        elif not isinstance(name, str) or not name:
            problems.append(f"{path}.name: must be a non-empty string")
            name = None
        part_children: list[tuple[str, Any, str, str]] = []
        if plugin == "partitioning" and isinstance(own.get("partitions"), list):
            parts = []
            for j, part in enumerate(own["partitions"]):
                if not isinstance(part, dict):
                    parts.append(part)
                    continue
                ppath = f"{path}.partitions[{j}]"
                own_part = {k: v for k, v in part.items() if k not in plugin_names}
                # as in diskimage-builder, a partition's base is always its table's
                if isinstance(own.get("base"), str):
                    own_part["base"] = own["base"]
                parts.append(own_part)
                pname = part.get("name")
                for k, v in part.items():
                    if k in plugin_names:
                        if isinstance(pname, str):
                            part_children.append((k, v, f"{ppath}.{k}", pname))
                        else:
                            problems.append(f"{ppath}.{k}: its partition has no name")
            own["partitions"] = parts
        out.append(RawNode(plugin, name or "", own, path))
        for k, v, cpath, pname in part_children:
            walk(k, v, cpath, pname)
        for k, v in children:
            if name:
                walk(k, v, f"{path}.{k}", name)
            else:
                problems.append(f"{path}.{k}: its parent has no name")

    for i, entry in enumerate(data):
        path = f"config[{i}]"
        if not isinstance(entry, dict) or not entry:
            problems.append(f"{path}: must be a single-key map {{plugin: {{...}}}}")
            continue
        if len(entry) != 1:
            keys = ", ".join(repr(str(k)) for k in entry)
            problems.append(
                f"{path}: a node must have exactly one plugin key, found {len(entry)}: {keys}"
            )
            continue
        ((plugin, body),) = entry.items()
        if plugin not in plugin_names:
            problems.append(
                f"{path}: unknown block-device plugin {plugin!r}"
                + _suggest(str(plugin), plugin_names)
            )
            continue
        walk(plugin, body, f"{path}.{plugin}", None)
    return out, problems


def _json_path(parts: Any) -> str:
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else f".{p}"
    return s


def schema_problems(
    raw: RawNode,
    schema: Mapping[str, Any],
    plugin_names: set[str],
    warnings: list[str] | None = None,
) -> list[str]:
    """The schema's complaints about one entry, each with its YAML path.

    Unknown keys are not problems: diskimage-builder ignores them, so they go to
    ``warnings`` (with a did-you-mean) and the entry keeps its meaning.
    """
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(raw.config), key=lambda e: list(e.absolute_path)):
        where = raw.path + _json_path(err.absolute_path)
        if err.validator == "required" and not raw.name and "'name'" in err.message:
            continue  # flatten() has said "missing name" already
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - known):
                msg = f"{where}.{extra}: unknown key, ignored" + _suggest(
                    str(extra), known | plugin_names
                )
                if warnings is not None:
                    warnings.append(msg)
                else:
                    problems.append(msg)
            continue
        problems.append(f"{where}: {err.message}")
    return problems


def _merge_root_params(raw: RawNode, params: BlockDeviceParams) -> None:
    """diskimage-builder's params (root-fs-type, root-label, root-fs-opts) fill mkfs_root."""
    if raw.plugin != "mkfs" or raw.name != ROOT_MKFS:
        return
    raw.config.setdefault("type", params.root_fs_type)
    if "label" not in raw.config:
        # the default follows this filesystem's own type (xfs labels are short)
        raw.config["label"] = params.root_label or (
            "img-rootfs" if raw.config["type"] == "xfs" else "cloudimg-rootfs"
        )
    if "opts" not in raw.config and params.root_fs_opts:
        raw.config["opts"] = list(params.root_fs_opts)


def load_config(
    source: str | list[Any],
    params: BlockDeviceParams,
    *,
    origin: str = "block-device config",
    host_checks: bool = True,
) -> BlockDeviceConfig:
    """Parse and validate a config (YAML text or already-parsed list).

    Raises :class:`BlockDeviceConfigError` (a MultiError) listing every problem with its
    YAML path.  ``host_checks`` also checks that this host can create it (tools,
    device-mapper for LVM); turn it off to validate a config for another machine.
    """
    data = parse_yaml(source, origin) if isinstance(source, str) else source
    classes = plugins()
    names = set(classes)
    raws, problems = flatten(data, names)

    nodes: dict[str, Node] = {}
    where: dict[str, str] = {}
    warnings: list[str] = []
    # names of entries with schema problems: they are reported once, and whatever is
    # built on them is not reported again as undefined
    broken: set[str] = set()
    # one state dict for the plugins written for diskimage-builder (see dibcompat)
    dibcompat.new_state()
    for raw in raws:
        cls = classes[raw.plugin]
        bad = schema_problems(raw, cls.schema(), names, warnings)
        if bad:
            problems += bad
            broken.add(raw.name)
            broken.update(_inner_names(raw.config))
            continue
        if not raw.name:
            continue
        _merge_root_params(raw, params)
        try:
            made = cls.from_config(raw, params)
        except ConfigError as e:
            problems.append(e.message)
            broken.add(raw.name)
            continue
        for node in made:
            _keep_tables_apart(node, nodes, where)
            if node.name in nodes:
                problems.append(
                    f"{node.path}: duplicate name {node.name!r} (first defined at "
                    f"{where[node.name]})"
                )
                continue
            node.seq = len(nodes)
            nodes[node.name] = node
            where[node.name] = node.path

    graph = nx.DiGraph()
    for name in nodes:
        graph.add_node(name)
    for node in nodes.values():
        for base in node.bases:
            if base in broken and base not in nodes:
                continue
            if base not in nodes:
                problems.append(
                    f"{node.path}.base: undefined node {base!r}" + _suggest(base, nodes)
                )
                continue
            if node.base_kinds and nodes[base].kind not in node.base_kinds:
                problems.append(
                    f"{node.path}.base: {base!r} is a {nodes[base].plugin} node "
                    f"({nodes[base].kind}); {node.plugin} needs a " + " or ".join(node.base_kinds)
                )
                continue
            graph.add_edge(base, node.name)
        if node.needs_base and not node.bases:
            problems.append(f"{node.path}: missing base")
        for dep in node.after(nodes):
            if dep in nodes:
                graph.add_edge(dep, node.name)
        for succ in node.before(nodes):
            if succ not in nodes:
                problems.append(f"{node.path}: undefined node {succ!r}" + _suggest(succ, nodes))
                continue
            graph.add_edge(node.name, succ)
    if not problems:
        try:
            cycle = nx.find_cycle(graph)
            problems.append(
                "config: the nodes form a cycle: "
                + " -> ".join(a for a, _ in cycle)
                + f" -> {cycle[0][0]}"
            )
        except nx.NetworkXNoCycle:
            pass

    order: list[str] = []
    if not problems:
        order = list(nx.lexicographical_topological_sort(graph))
        ctx = ValidationContext({n: nodes[n] for n in order}, params)
        for n in order:
            nodes[n].validate(ctx)
        problems += ctx.problems
        warnings += ctx.warnings
    elif not broken:
        # the graph is unsound, but nodes whose bases all exist can still be checked
        # on their own (labels, sizes), so one run reports those too
        ctx = ValidationContext(nodes, params)
        for node in nodes.values():
            try:
                node.validate(ctx)
            except (KeyError, TypeError, AttributeError):
                continue  # it needed a node that is not there (reported above)
        problems += ctx.problems
    if not problems and host_checks:
        seen: set[str] = set()
        for n in order:
            for p in nodes[n].host_problems():
                if p not in seen:
                    seen.add(p)
                    problems.append(f"{nodes[n].path}: {p}")
    if problems:
        raise BlockDeviceConfigError(problems, origin)
    for w in warnings:
        LOG.warning("block-device config (%s): %s", origin, w)
    return BlockDeviceConfig(
        origin, data, {n: nodes[n] for n in order}, graph, order, params, warnings
    )


def _keep_tables_apart(node: Node, nodes: dict[str, Node], where: dict[str, str]) -> None:
    """A partition table's name is not in diskimage-builder's node namespace.

    DIB's graph has no node for a table (its partitions hang off the table's base), so
    a table may share its name with another node; ours is renamed out of the way.
    """
    if node.name not in nodes:
        return
    if nodes[node.name].kind == "table" and node.kind != "table":
        table = nodes.pop(node.name)
        path = where.pop(node.name)
    elif node.kind == "table":
        table, path = node, node.path
    else:
        return
    new = f"{table.name} (table)"
    while new in nodes:
        new += "'"
    table.name = new
    if table is not node:
        nodes[new] = table
        where[new] = path


def _inner_names(config: Mapping[str, Any]) -> set[str]:
    """Names an entry defines besides its own (partitions, pvs, vgs, lvs)."""
    out: set[str] = set()
    for key in ("partitions", "pvs", "vgs", "lvs"):
        items = config.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out.add(item["name"])
    return out
