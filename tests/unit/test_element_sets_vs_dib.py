"""element-info's element sets against diskimage-builder's own resolver (3.43.0, run from
its unpacked wheel in a subprocess against its own element tree): for every element the
two share, ``<element> debian-minimal`` (or the element alone where diskimage-builder
needs its own distribution) expands to the same set of names, but for the differences
below.  Each comes from an ``element-deps`` difference that
tests/unit/test_elements_dib_metadata.py lists with its reason."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

from dibpy.elements import find_library, resolve
from dibpy.errors import DibpyError
from tests.dibref import dib_elements, dib_release

# request -> (names only dibpy resolves, names only diskimage-builder resolves)
KNOWN: dict[str, tuple[set[str], set[str]]] = {}

#: whole builds' element lists, beyond one element each
EXTRA = [
    ["debian-minimal", "vm", "block-device-mbr"],
    ["debian-minimal", "vm", "block-device-efi", "cloud-init", "growroot"],
    ["ubuntu-minimal", "vm", "block-device-gpt", "dhcp-all-interfaces"],
    ["debian-minimal", "baremetal", "dracut-regenerate", "growvols", "block-device-efi-lvm"],
]

DIB_RESOLVER = """
import json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.disable(logging.CRITICAL)
from diskimage_builder.element_dependencies import get_elements
out = {}
for req in json.load(sys.stdin):
    try:
        out[" ".join(req)] = sorted(n for n, _ in get_elements(req, sys.argv[2]))
    except Exception as e:
        out[" ".join(req)] = type(e).__name__
print(json.dumps(out))
"""


@functools.cache
def shared() -> tuple[str, ...]:
    lib = find_library({}, include_packages=False)
    dib = dib_elements()
    return tuple(n for n in sorted(lib.elements) if (dib / n).is_dir() and lib[n].obsolete is None)


def dib_sets(requests: list[list[str]]) -> dict[str, list[str] | str]:
    r = subprocess.run(
        [sys.executable, "-c", DIB_RESOLVER, str(dib_release()), str(dib_elements())],
        input=json.dumps(requests), capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def our_set(request: list[str]) -> set[str] | str:
    try:
        return set(resolve(request, find_library({}, include_packages=False)).names)
    except DibpyError as e:
        return str(e)


def compare(requests: list[list[str]], theirs: dict[str, list[str] | str]) -> list[str]:
    wrong = []
    for req in requests:
        key = " ".join(req)
        t = theirs[key]
        assert not isinstance(t, str), f"{key}: diskimage-builder fails: {t}"
        o = our_set(req)
        if isinstance(o, str):
            wrong.append(f"{key}: dibpy fails: {o}")
            continue
        got = (o - set(t), set(t) - o)
        if got != KNOWN.get(key, (set(), set())):
            wrong.append(
                f"{key}: only dibpy {sorted(got[0])}, only diskimage-builder {sorted(got[1])}"
            )
    return wrong


def test_each_shared_element_expands_like_diskimage_builder() -> None:
    names = shared()
    assert len(names) > 85
    with_os = [[n, "debian-minimal"] for n in names]
    alone = [[n] for n in names]
    theirs = dib_sets(with_os + alone)
    chosen = []
    for a, b in zip(with_os, alone, strict=True):
        if not isinstance(theirs[" ".join(a)], str):
            chosen.append(a)
        elif not isinstance(theirs[" ".join(b)], str):
            chosen.append(b)
    # the rest need more than one element to resolve there (vm needs a block-device-*)
    assert len(chosen) > 80
    wrong = compare(chosen, theirs)
    assert not wrong, "\n".join(wrong)
    assert set(KNOWN) <= {" ".join(r) for r in chosen}, "a KNOWN entry is never compared"


def test_whole_element_lists_expand_like_diskimage_builder() -> None:
    wrong = compare(EXTRA, dib_sets(EXTRA))
    assert not wrong, "\n".join(wrong)


def test_debian_minimal_vm_includes_modprobe() -> None:
    ours = our_set(["debian-minimal", "vm", "block-device-mbr"])
    assert isinstance(ours, set) and "modprobe" in ours
