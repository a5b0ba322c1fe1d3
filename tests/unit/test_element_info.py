"""element-info: plain, --env (as DIB scripts eval it), --json, --graph, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(root: Path, name: str, deps: str = "", provides: str = "") -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "README.rst").write_text(f"{name}\n")
    if deps:
        (d / "element-deps").write_text("\n".join(deps.split()) + "\n")
    if provides:
        (d / "element-provides").write_text(provides + "\n")


@pytest.fixture
def elements(tmp_path: Path) -> Path:
    root = tmp_path / "elements"
    make(root, "my-os", deps="pkgs", provides="operating-system")
    make(root, "pkgs")
    make(root, "vm", deps="block-device")
    make(root, "block-device-mbr", provides="block-device")
    make(root, "base")
    return root


def element_info(*args: str, elements_path: Path | str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ELEMENTS_PATH"}
    if elements_path is not None:
        env["ELEMENTS_PATH"] = str(elements_path)
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "element-info"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )


def test_plain(elements: Path) -> None:
    r = element_info("my-os", "vm", "block-device-mbr", elements_path=elements)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows == [
        ["block-device-mbr", str(elements / "block-device-mbr")],
        ["my-os", str(elements / "my-os")],
        ["pkgs", str(elements / "pkgs")],
        ["vm", str(elements / "vm")],
    ]


def test_expand_defaults(elements: Path) -> None:
    r = element_info("--expand-defaults", "my-os", "vm", elements_path=elements)
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()] == [
        "base",
        "block-device-mbr",
        "my-os",
        "pkgs",
        "vm",
    ]


def test_env_as_dib_scripts_use_it(elements: Path, tmp_path: Path) -> None:
    r = element_info("--env", "my-os", "vm", "block-device-mbr", elements_path=elements)
    assert r.returncode == 0, r.stderr
    env_file = tmp_path / "env"
    env_file.write_text(r.stdout)
    script = (
        "set -eu -o pipefail\n"
        f'eval "$(cat {env_file})"\n'
        'echo "IMAGE_ELEMENT=$IMAGE_ELEMENT"\n'
        # exactly how diskimage-builder's element scripts read it
        "eval declare -A image_elements=($(get_image_element_array))\n"
        'for e in $(echo "${!image_elements[@]}" | tr " " "\\n" | sort); do\n'
        '  echo "$e -> ${image_elements[$e]}"\n'
        "done\n"
        # exported, so a child bash has it too
        "bash -c 'type -t get_image_element_array'\n"
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "IMAGE_ELEMENT=block-device-mbr my-os pkgs vm"
    assert lines[1:5] == [
        f"block-device-mbr -> {elements / 'block-device-mbr'}",
        f"my-os -> {elements / 'my-os'}",
        f"pkgs -> {elements / 'pkgs'}",
        f"vm -> {elements / 'vm'}",
    ]
    assert lines[5] == "function"


def test_json(elements: Path) -> None:
    r = element_info("--json", "my-os", elements_path=elements)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [e["name"] for e in data["elements"]] == ["my-os", "pkgs"]
    assert data["elements"][0] == {
        "name": "my-os",
        "path": str(elements / "my-os"),
        "origin": "ELEMENTS_PATH",
    }
    assert data["provided"] == {"operating-system": "my-os"}
    assert data["elements_path"].split(":")[0] == str(elements)


def test_graph_dot(elements: Path, tmp_path: Path) -> None:
    dot = tmp_path / "g.dot"
    r = element_info("--graph", str(dot), "my-os", "vm", "block-device-mbr", elements_path=elements)
    assert r.returncode == 0, r.stderr
    text = dot.read_text()
    assert text.startswith("digraph elements {")
    assert '"my-os" -> "pkgs";' in text
    assert '"vm" -> "block-device";' in text
    # the ordinary listing is still printed
    assert "my-os" in r.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_graph_svg(elements: Path, tmp_path: Path) -> None:
    svg = tmp_path / "g.svg"
    r = element_info("--graph", str(svg), "my-os", elements_path=elements)
    assert r.returncode == 0, r.stderr
    text = svg.read_text()
    assert "<svg" in text and "pkgs" in text
    assert "my-os" in text or "my&#45;os" in text


def clear_error(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("element-info: error:"), r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


def test_bad_graph_format(elements: Path, tmp_path: Path) -> None:
    r = element_info("--graph", str(tmp_path / "g.xyz"), "my-os", elements_path=elements)
    clear_error(r, "unknown format 'xyz'")
    assert r.returncode == 2


def test_graph_into_missing_directory(elements: Path, tmp_path: Path) -> None:
    r = element_info("--graph", str(tmp_path / "no" / "g.dot"), "my-os", elements_path=elements)
    clear_error(r, str(tmp_path / "no" / "g.dot"))


def test_unknown_element(elements: Path) -> None:
    r = element_info("my-oss", elements_path=elements)
    clear_error(r, "element 'my-oss' not found; did you mean 'my-os'?", "hint:")
    assert r.returncode == 2


def test_no_operating_system(elements: Path) -> None:
    clear_error(element_info("pkgs", elements_path=elements), "no element provides")
    assert element_info("--no-os-check", "pkgs", elements_path=elements).returncode == 0


def test_missing_elements_path_dir(tmp_path: Path) -> None:
    r = element_info("my-os", elements_path=tmp_path / "gone")
    clear_error(r, "ELEMENTS_PATH entry is not a directory")


def test_no_arguments_is_a_usage_error(elements: Path) -> None:
    r = element_info(elements_path=elements)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "the following arguments are required: elements" in r.stderr


def test_env_and_json_are_exclusive(elements: Path) -> None:
    r = element_info("--env", "--json", "my-os", elements_path=elements)
    assert r.returncode == 2
    assert "not allowed with" in r.stderr
