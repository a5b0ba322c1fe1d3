"""Per-format qemu-img creation options: from defaults, variables and --qemu-img-options.

Every qemu-img based format has a table of the creation options it accepts, with the
values each may take.  An option's value comes from (later wins):

1. the format's default (e.g. ``force_size=on`` for vhd),
2. the variable ``DIB_<OUTPUT>_<KEY>`` (``DIB_QCOW2_COMPAT=0.10``, ``DIB_VHD_SUBFORMAT=fixed``),
3. ``--qemu-img-options`` (``DIB_QEMU_IMG_OPTIONS``): ``key=value,...``; a plain key applies
   to every requested format that knows it, ``OUTPUT:key=value`` to that output only
   (``qcow2:compat=0.10,vmdk:subformat=streamOptimized``).

A key no requested format knows, a value a format does not take, or two options qemu-img
refuses together (:data:`CONFLICTS`: e.g. qcow2 compression with any preallocation) is an
error found before the build starts (:func:`validate`), each naming where its options
were set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dibpy.errors import ConfigError, MultiError

_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_ONOFF = ("on", "off")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size_bytes(value: str) -> int:
    """``64k`` -> 65536 (qemu-img's suffixes, base 1024); the value matched ``_SIZE``."""
    unit = value[-1].lower() if value[-1].isalpha() else ""
    return int(value[: len(value) - len(unit)]) * _UNITS[unit]


def _power_of_two_between(low: int, high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        n = size_bytes(value)
        if n & (n - 1) or not low <= n <= high:
            return f"must be a power of two from {_human(low)} to {_human(high)}"
        return None

    return check


def _human(n: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


@dataclass(frozen=True)
class Key:
    name: str
    #: allowed values; empty means free-form (checked by ``pattern`` if set)
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    help: str = ""
    #: a further check of a value that matched ``pattern``: the problem, or None
    valid: Callable[[str], str | None] | None = None

    def check(self, value: str) -> str | None:
        if self.choices and value not in self.choices:
            return f"{self.name}={value}: must be one of {', '.join(self.choices)}"
        if self.pattern is not None and not self.pattern.match(value):
            return f"{self.name}={value}: not a size (e.g. 64k, 2M)"
        if self.valid is not None and (problem := self.valid(value)):
            return f"{self.name}={value}: {problem}"
        return None


QCOW2_KEYS = (
    Key("compat", ("0.10", "1.1", "v2", "v3"), help="qcow2 version (0.10 for old QEMU)"),
    Key(
        "cluster_size",
        pattern=_SIZE,
        help="cluster size, 512 to 2M (default 64k)",
        valid=_power_of_two_between(512, 2 << 20),
    ),
    Key("preallocation", ("off", "metadata", "falloc", "full"), help="preallocation mode"),
    Key("lazy_refcounts", _ONOFF, help="lazy refcounts (compat 1.1 only)"),
    Key("compression_type", ("zlib", "zstd"), help="compression algorithm (compat 1.1)"),
    Key("refcount_bits", ("1", "2", "4", "8", "16", "32", "64"), help="refcount width"),
    Key("extended_l2", _ONOFF, help="subcluster allocation"),
)
VPC_KEYS = (
    Key("subformat", ("dynamic", "fixed"), help="dynamic (sparse) or fixed (Azure) VHD"),
    Key("force_size", _ONOFF, help="exact virtual size instead of CHS geometry"),
)
VHDX_KEYS = (
    Key("subformat", ("dynamic", "fixed"), help="dynamic or fixed VHDX"),
    Key(
        "block_size",
        pattern=_SIZE,
        help="block size, 1M to 256M",
        valid=_power_of_two_between(1 << 20, 256 << 20),
    ),
    Key("log_size", pattern=_SIZE, help="log size"),
    Key("block_state_zero", _ONOFF, help="mark blocks zero instead of writing zeros"),
)
_VMDK_COMMON = (
    Key("adapter_type", ("ide", "lsilogic", "buslogic", "legacyESX"), help="disk adapter"),
    Key("hwversion", pattern=re.compile(r"^[0-9]+$"), help="virtual hardware version"),
    Key("toolsversion", pattern=re.compile(r"^[0-9]+$"), help="VMware tools version"),
    Key("compat6", _ONOFF, help="VMDK version 6"),
    Key("zeroed_grain", _ONOFF, help="zeroed-grain GTE"),
)
#: VMware's split VMDKs: a descriptor plus 2 GiB extents NAME-s001.vmdk (sparse) or
#: NAME-f001.vmdk (flat)
SPLIT_VMDK = ("twoGbMaxExtentSparse", "twoGbMaxExtentFlat")
VMDK_KEYS = (
    Key(
        "subformat",
        ("monolithicSparse", "streamOptimized", *SPLIT_VMDK),
        help="monolithicSparse (default), streamOptimized (for upload and OVA), "
        "twoGbMaxExtentSparse or twoGbMaxExtentFlat (split into 2 GiB extents)",
    ),
    *_VMDK_COMMON,
)
#: a VMware Workstation VM's disk: one it can run from (streamOptimized is for import)
VMWARE_KEYS = (
    Key(
        "subformat",
        ("monolithicSparse", *SPLIT_VMDK),
        help="monolithicSparse (default), twoGbMaxExtentSparse or twoGbMaxExtentFlat",
    ),
    *_VMDK_COMMON,
)

#: output name -> (qemu-img format, keys, defaults)
FORMATS: dict[str, tuple[str, tuple[Key, ...], dict[str, str]]] = {
    "qcow2": ("qcow2", QCOW2_KEYS, {}),
    "vhd": ("vpc", VPC_KEYS, {"subformat": "dynamic", "force_size": "on"}),
    "vhdx": ("vhdx", VHDX_KEYS, {"subformat": "dynamic"}),
    "vmdk": ("vmdk", VMDK_KEYS, {"subformat": "monolithicSparse"}),
    # an OVA's disk is always streamOptimized: the subformat is not the user's to choose
    "ova": ("vmdk", _VMDK_COMMON, {"subformat": "streamOptimized"}),
    "vmware": ("vmdk", VMWARE_KEYS, {"subformat": "monolithicSparse", "adapter_type": "lsilogic"}),
}


def parse(text: str) -> list[tuple[str | None, str, str]]:
    """``[OUTPUT:]key=value,...`` -> [(output or None, key, value)]."""
    out: list[tuple[str | None, str, str]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(
                f"--qemu-img-options: {item!r} is not key=value",
                hint="e.g. compat=0.10,cluster_size=2M or qcow2:compat=0.10",
            )
        key, value = item.split("=", 1)
        target: str | None = None
        if ":" in key:
            target, key = key.split(":", 1)
        out.append((target, key.strip(), value.strip()))
    return out


#: qcow2 compression unless DIB_QCOW2_COMPRESSION_TYPE / compression_type= says otherwise
DEFAULT_QCOW2_COMPRESSION = "zstd"


def _env_name(output: str, key: str) -> str:
    return f"DIB_{output.upper()}_{key.upper()}"


def resolve(
    output: str,
    qemu_img_options: str,
    environ: Mapping[str, str],
    *,
    compressed: bool = False,
) -> dict[str, str]:
    """The creation options for ``output``; raises ConfigError on a bad value or on options
    that cannot go together (``compressed``: the output is written with ``qemu-img
    convert -c``)."""
    opts, _ = _resolve(output, qemu_img_options, environ, compressed)
    return opts


def _resolve(
    output: str, qemu_img_options: str, environ: Mapping[str, str], compressed: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """(options, where each was set)."""
    if output not in FORMATS:
        return {}, {}
    _, keys, defaults = FORMATS[output]
    table = {k.name: k for k in keys}
    opts = dict(defaults)
    source = {k: f"the {output} default" for k in defaults}
    for k in keys:
        var = _env_name(output, k.name)
        v = environ.get(var)
        if v:
            opts[k.name] = v
            source[k.name] = var
    for target, key, value in parse(qemu_img_options):
        if target not in (None, output) or key not in table:
            continue
        opts[key] = value
        source[key] = "--qemu-img-options"
    # zstd: about 10x faster than zlib (which qemu-img runs on one core) and smaller;
    # it needs a reader from QEMU 5.1 on, so compat=0.10 (for older ones) keeps zlib
    old_compat = opts.get("compat", "1.1") in ("0.10", "v2")
    if output == "qcow2" and "compression_type" not in opts and not old_compat:
        opts["compression_type"] = DEFAULT_QCOW2_COMPRESSION
        source["compression_type"] = "the qcow2 default"
    problems = [p for k, v in opts.items() if k in table and (p := table[k].check(v))]
    if problems:
        raise ConfigError(
            f"{output} options: " + "; ".join(problems),
            hint=f"set by {_env_name(output, 'KEY')} or --qemu-img-options",
        )
    clashes = [c for c in CONFLICTS if output in c.outputs and c.applies(opts, compressed)]
    if clashes:
        c = clashes[0]
        named = [_named(output, k, opts, source) for k in c.keys]
        more = f" (and {len(clashes) - 1} more refused pair)" if len(clashes) > 1 else ""
        raise OptionConflict(
            f"{output} options: {' and '.join(named)} cannot go together: {c.why}{more}",
            hint=c.hint,
        )
    return opts, source


def _named(output: str, key: str, opts: Mapping[str, str], source: Mapping[str, str]) -> str:
    if key == COMPRESSION:
        return f"compression ({output} is compressed unless -u)"
    return f"{key}={opts[key]} (from {source.get(key, 'qemu-img')})"


class OptionConflict(ConfigError):
    """Two options qemu-img refuses together."""


#: the pseudo-key of :class:`Conflict` for ``qemu-img convert -c`` (qcow2 without -u)
COMPRESSION = "-c"


def _old_qcow2(opts: Mapping[str, str]) -> bool:
    return opts.get("compat") in ("0.10", "v2")


@dataclass(frozen=True)
class Conflict:
    """Two options qemu-img refuses together (each rule tried against qemu-img 7.2, whose
    error message ``why`` paraphrases; tests/integration/test_outputs.py re-checks them)."""

    outputs: tuple[str, ...]
    keys: tuple[str, str]
    applies: Callable[[Mapping[str, str], bool], bool]
    why: str
    hint: str


CONFLICTS = (
    Conflict(
        ("qcow2",),
        ("preallocation", COMPRESSION),
        lambda o, c: c and o.get("preallocation", "off") != "off",
        "qemu-img does not preallocate a compressed image",
        "add -u for an uncompressed, preallocated qcow2, or drop preallocation",
    ),
    Conflict(
        ("qcow2",),
        ("compat", "lazy_refcounts"),
        lambda o, c: _old_qcow2(o) and o.get("lazy_refcounts") == "on",
        "lazy refcounts need compat 1.1",
        "drop lazy_refcounts=on, or use compat=1.1",
    ),
    Conflict(
        ("qcow2",),
        ("compat", "compression_type"),
        lambda o, c: _old_qcow2(o) and o.get("compression_type", "zlib") != "zlib",
        "compat 0.10 images are zlib-compressed only",
        "use compression_type=zlib (or drop it), or compat=1.1",
    ),
    Conflict(
        ("qcow2",),
        ("compat", "refcount_bits"),
        lambda o, c: _old_qcow2(o) and o.get("refcount_bits", "16") != "16",
        "compat 0.10 images have 16-bit refcounts only",
        "drop refcount_bits, or use compat=1.1",
    ),
    Conflict(
        ("qcow2",),
        ("compat", "extended_l2"),
        lambda o, c: _old_qcow2(o) and o.get("extended_l2") == "on",
        "extended L2 entries need compat 1.1",
        "drop extended_l2=on, or use compat=1.1",
    ),
    Conflict(
        ("qcow2",),
        ("extended_l2", "cluster_size"),
        lambda o, c: (
            o.get("extended_l2") == "on"
            and "cluster_size" in o
            and bool(_SIZE.match(o["cluster_size"]))
            and size_bytes(o["cluster_size"]) < 16 << 10
        ),
        "extended L2 entries need clusters of at least 16k",
        "use cluster_size=16k or more, or drop extended_l2=on",
    ),
    Conflict(
        ("vmdk", "ova"),
        ("compat6", "hwversion"),
        lambda o, c: o.get("compat6") == "on" and "hwversion" in o,
        "qemu-img takes compat6 only without hwversion",
        "drop one of the two (hwversion=6 is what compat6=on means)",
    ),
)


def compresses(output: str, uncompressed: bool) -> bool:
    """Whether ``output`` is written with ``qemu-img convert -c`` (qcow2 unless -u)."""
    return output == "qcow2" and not uncompressed


def validate(
    outputs: Sequence[str],
    qemu_img_options: str,
    environ: Mapping[str, str],
    *,
    uncompressed: bool = False,
) -> None:
    """Every problem with the options of the requested outputs, reported at once."""
    problems: list[str] = []
    try:
        items = parse(qemu_img_options)
    except ConfigError as e:
        raise MultiError([e.message], e.hint) from None
    qemu_outputs = [o for o in outputs if o in FORMATS]
    for target, key, _ in items:
        if target is not None:
            if target not in FORMATS:
                problems.append(
                    f"--qemu-img-options: {target}:{key}: {target!r} is not a qemu-img "
                    f"output ({', '.join(FORMATS)})"
                )
                continue
            if key not in _keys(target):
                problems.append(_unknown(key, [target]))
            continue
        if not any(key in _keys(o) for o in qemu_outputs):
            problems.append(_unknown(key, qemu_outputs))
    hints: list[str] = []
    for o in qemu_outputs:
        try:
            resolve(o, qemu_img_options, environ, compressed=compresses(o, uncompressed))
        except ConfigError as e:
            problems.append(e.message)
            if isinstance(e, OptionConflict) and e.hint:
                hints.append(e.hint)
    if problems:
        hints.append("doc/outputs.md lists every format's options")
        raise MultiError(problems, hint="; ".join(hints))


def _keys(output: str) -> set[str]:
    return {k.name for k in FORMATS[output][1]}


def _unknown(key: str, outputs: Iterable[str]) -> str:
    outs = list(outputs)
    if not outs:
        return f"--qemu-img-options: {key}: no requested output (-t) takes qemu-img options"
    known = sorted(set().union(*(_keys(o) for o in outs)))
    from dibpy.errors import did_you_mean

    near = did_you_mean(key, known)
    msg = f"--qemu-img-options: {key!r} is not an option of {', '.join(outs)}"
    return msg + (f" ({near})" if near else f" (known: {', '.join(known)})")


def to_argument(opts: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in opts.items())
