"""Where the block-device config comes from (as diskimage-builder decides, but defined)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dibpy.elements.model import Element
from dibpy.errors import ConfigError
from dibpy.log import LOG

#: used when neither DIB_BLOCK_DEVICE_CONFIG nor an element gives a config: one
#: unpartitioned filesystem on the whole image, mounted at /
FALLBACK_CONFIG = """\
- local_loop:
    name: image0
- mkfs:
    name: mkfs_root
    base: image0
    mount:
      mount_point: /
      fstab:
        options: defaults
        fsck-passno: 1
"""


def config_source(
    elements: Sequence[Element], arch: str, environ: Mapping[str, str]
) -> tuple[str, str]:
    """The config text and a description of its origin (for error messages).

    Order: ``DIB_BLOCK_DEVICE_CONFIG`` (inline YAML, or ``file://PATH``); else the
    element with ``block-device-<arch>.yaml`` or ``block-device-default.yaml`` (if
    several have one, a warning names them and the first by element name wins, where
    diskimage-builder's choice is undefined); else the fallback above.
    """
    value = environ.get("DIB_BLOCK_DEVICE_CONFIG", "")
    if value.strip():
        if value.startswith("file://"):
            path = Path(value[len("file://") :])
            try:
                return path.read_text(), str(path)
            except OSError as e:
                raise ConfigError(
                    f"DIB_BLOCK_DEVICE_CONFIG: cannot read {path}: {e.strerror}",
                    hint="file:// must be followed by an absolute path",
                ) from None
        return value, "DIB_BLOCK_DEVICE_CONFIG"
    found = sorted(
        ((e.name, p) for e in elements if (p := e.block_device_config(arch)) is not None),
    )
    if len(found) > 1:
        LOG.warning(
            "several elements give a block-device config: %s; using %s's "
            "(set DIB_BLOCK_DEVICE_CONFIG to choose)",
            ", ".join(f"{n} ({p.name})" for n, p in found),
            found[0][0],
        )
    if found:
        name, path = found[0]
        return path.read_text(), f"element {name}: {path}"
    return FALLBACK_CONFIG, "the built-in default (no element has block-device-*.yaml)"
