"""redhat-common's partition chooser: which partitions of a cloud image are extracted."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

TOOL = REPO / "dibpy" / "lib" / "image-tools" / "partitions.py"
LINUX_GPT = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ESP_GPT = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_GPT = "21686148-6449-6E6F-744E-656564454649"
LVM_GPT = "E6D6D379-F507-44C2-A23C-238F2A3DF928"


def choose(
    parts: list[dict[str, object]] | None, label: str = "gpt"
) -> subprocess.CompletedProcess[str]:
    text = (
        ""
        if parts is None
        else json.dumps(
            {
                "partitiontable": {
                    "label": label,
                    "unit": "sectors",
                    "sectorsize": 512,
                    "partitions": parts,
                }
            }
        )
    )
    return subprocess.run(
        [sys.executable, str(TOOL), "999"], input=text, capture_output=True, text=True
    )


def p(start: int, size: int, kind: str) -> dict[str, object]:
    return {"node": "x", "start": start, "size": size, "type": kind}


def test_stream_style_gpt_layout() -> None:
    # BIOS boot, ESP, /boot, root: the largest Linux partition is the root
    r = choose(
        [
            p(2048, 2048, BIOS_GPT),
            p(4096, 409600, ESP_GPT),
            p(413696, 2097152, LINUX_GPT),
            p(2510848, 16777216, LINUX_GPT),
        ]
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"root {2510848 * 512} {16777216 * 512}",
        f"linux {413696 * 512} {2097152 * 512}",
        f"esp {4096 * 512} {409600 * 512}",
    ]


def test_mbr_single_partition() -> None:
    r = choose([p(2048, 16000000, "83")], label="dos")
    assert r.stdout.splitlines() == [f"root {2048 * 512} {16000000 * 512}"]


def test_no_partition_table_is_one_filesystem() -> None:
    r = choose(None)
    assert r.stdout.splitlines() == ["root 0 999"]


def test_lvm_root_is_refused() -> None:
    r = choose([p(2048, 2097152, LINUX_GPT), p(2099200, 40000000, LVM_GPT)])
    assert r.returncode == 3
    assert "LVM, which cannot be read without device-mapper" in r.stderr
    r = choose([p(2048, 40000000, "8e")], label="dos")
    assert r.returncode == 3


def test_no_linux_partition_names_the_types() -> None:
    r = choose([p(2048, 4096, ESP_GPT)])
    assert r.returncode == 3
    assert "no Linux partition" in r.stderr and ESP_GPT in r.stderr
