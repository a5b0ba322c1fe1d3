"""Choose the partitions to extract from a distribution's cloud image (runs on the host).

Reads ``sfdisk --json IMAGE`` on stdin (or nothing, for an image without a partition
table) and prints one line per partition to copy::

    root OFFSET SIZE
    linux OFFSET SIZE      (another Linux partition: maybe /boot, decided by the caller)
    esp OFFSET SIZE        (the EFI system partition)

in bytes.  The root is the largest Linux partition.  An image whose root lives in LVM
cannot be read without device-mapper: that is an error saying so (exit status 3).

Usage: partitions.py IMAGE_SIZE_BYTES < sfdisk.json
"""

from __future__ import annotations

import json
import sys

LINUX = {
    "83",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4",  # Linux filesystem
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",  # root (x86-64)
    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",  # root (aarch64)
    "44479540-F297-41B2-9AF7-D131D5F0458A",  # root (x86)
    "BC13C2FF-59E6-4262-A352-B275FD6F7172",  # extended boot loader (/boot)
}
LVM = {"8E", "E6D6D379-F507-44C2-A23C-238F2A3DF928"}
ESP = {"EF", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"}


def choose(table: dict[str, object] | None, image_size: int) -> list[tuple[str, int, int]]:
    if table is None:
        return [("root", 0, image_size)]
    sector = int(str(table.get("sectorsize", 512)))
    parts = table.get("partitions", [])
    assert isinstance(parts, list)
    linux: list[tuple[int, int]] = []
    lvm: list[tuple[int, int]] = []
    esp: list[tuple[int, int]] = []
    for p in parts:
        kind = str(p.get("type", "")).upper()
        span = (int(p["start"]) * sector, int(p["size"]) * sector)
        if kind in LINUX:
            linux.append(span)
        elif kind in LVM:
            lvm.append(span)
        elif kind in ESP:
            esp.append(span)
    if lvm and (not linux or max(s for _, s in lvm) > max(s for _, s in linux)):
        raise SystemExit(
            "the image keeps its root filesystem in LVM, which cannot be read without "
            "device-mapper (not available on this build host); use an image with a plain "
            "partition or filesystem"
        )
    if not linux:
        kinds = ", ".join(sorted({str(p.get("type", "?")) for p in parts})) or "none"
        raise SystemExit(f"the image has no Linux partition (partition types: {kinds})")
    linux.sort(key=lambda span: span[1], reverse=True)
    out = [("root", *linux[0])]
    out += [("linux", *span) for span in linux[1:]]
    out += [("esp", *span) for span in esp]
    return out


def main(argv: list[str]) -> int:
    text = sys.stdin.read().strip()
    table = json.loads(text)["partitiontable"] if text else None
    try:
        chosen = choose(table, int(argv[1]))
    except SystemExit as e:
        print(f"extract-image: {e.code}", file=sys.stderr)
        return 3
    for role, offset, size in chosen:
        print(role, offset, size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
