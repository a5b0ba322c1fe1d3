"""The block-device state: a JSON journal of acquired resources and node values.

Kept in ``<build-dir>/states/block-device/state.json`` and rewritten (atomically) each
time a resource is acquired or released, so a later process can tear down what an
earlier one made even if that one was killed half-way.  JSON, never pickle.

Layout::

    {"version": 1,
     "resources": [{"id": 0, "kind": "loop", "node": "image0", "device": "/dev/loop0",
                    "file": "/.../image0.raw", "released": false}, ...],
     "nodes": {"image0": {"device": "/dev/loop0", "file": "..."}, ...},
     "created": true}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dibpy.blockdev import resources
from dibpy.errors import ConfigError, DibpyError
from dibpy.log import LOG

STATE_VERSION = 1


def state_dir(build_dir: Path) -> Path:
    return build_dir / "states" / "block-device"


class Journal:
    """Resources acquired so far and the values nodes published (device paths, UUIDs).

    Owned by one :class:`~dibpy.blockdev.device.BlockDevice`; ``path`` None keeps it in
    memory only (tests).
    """

    def __init__(self, path: Path | None, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data or {
            "version": STATE_VERSION,
            "resources": [],
            "nodes": {},
            "created": False,
        }

    @classmethod
    def load(cls, path: Path) -> Journal:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"{path}: unreadable block-device state: {e}",
                hint="remove the build directory's states/block-device/ after checking "
                "`losetup -a` and /proc/mounts by hand",
            ) from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ConfigError(f"{path}: not a dibpy block-device state (version mismatch)")
        return cls(path, data)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- resources ---------------------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        return list(self.data["resources"])

    def live(self) -> list[dict[str, Any]]:
        return [e for e in self.data["resources"] if not e.get("released")]

    def add(self, kind: str, node: str, **data: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": len(self.data["resources"]),
            "kind": kind,
            "node": node,
            "released": False,
            **data,
        }
        self.data["resources"].append(entry)
        self.save()
        return entry

    def release(self, entry: dict[str, Any]) -> None:
        """Release one resource now (idempotent); raises if it cannot be released."""
        if entry.get("released"):
            return
        resources.release(entry)
        entry["released"] = True
        self.save()

    def release_quietly(self, entry: dict[str, Any]) -> None:
        """For ExitStack callbacks: a failure is logged, never raised over another error."""
        try:
            self.release(entry)
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the cause
            LOG.error("cleanup: could not release %s %s: %s", entry["kind"], _what(entry), e)

    def release_all(self, *, strict: bool) -> list[str]:
        """Release every live resource, newest first.  Returns the failures.

        When ``strict`` the first failure stops it (the rest depend on it: a busy mount
        keeps its loop device); otherwise everything is tried and failures are logged.
        """
        failures: list[str] = []
        for entry in reversed(self.live()):
            try:
                self.release(entry)
            except Exception as e:  # noqa: BLE001
                msg = f"could not release {entry['kind']} {_what(entry)}: {e}"
                if strict:
                    raise DibpyError(msg) from e
                LOG.error("cleanup: %s", msg)
                failures.append(msg)
        return failures

    # -- node values -------------------------------------------------------------------

    def values(self, node: str) -> dict[str, Any]:
        nodes: dict[str, dict[str, Any]] = self.data["nodes"]
        return nodes.setdefault(node, {})

    def set_values(self, node: str, **values: Any) -> None:
        self.values(node).update(values)
        self.save()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)


def _what(entry: dict[str, Any]) -> str:
    for key in ("path", "device", "vg"):
        if key in entry:
            return str(entry[key])
    return f"of node {entry.get('node')}"
