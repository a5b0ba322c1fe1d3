"""Element discovery: ELEMENTS_PATH order, missing entries, and a real element package.

The package test builds a wheel for a tiny third-party package that declares its
element directories in the ``dibpy.elements`` entry-point group, installs it with pip
(``--target``, offline), and runs ``element-info`` in a subprocess that sees the package
only through PYTHONPATH.  The wheel is written directly (a zip with a dist-info) rather
than built with setuptools, because building needs the ``wheel`` package, which an
offline machine may not have; installing it is pip's ordinary wheel install.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dibpy.elements.discovery import ElementLibrary, builtin_elements_dir, find_library
from dibpy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def make(root: Path, name: str, deps: str = "") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "README.rst").write_text(f"{name}\n")
    if deps:
        (d / "element-deps").write_text(deps + "\n")
    return d


# ---------------------------------------------------------------- ELEMENTS_PATH


def test_earlier_elements_path_entry_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make(first, "dup")
    make(second, "dup")
    make(second, "only-second")
    lib = find_library(
        {"ELEMENTS_PATH": f"{first}:{second}"}, include_packages=False, include_builtin=False
    )
    assert lib["dup"].path == first / "dup"
    assert lib["dup"].origin == "ELEMENTS_PATH"
    assert lib["only-second"].path == second / "only-second"
    assert lib.shadowed == {"dup": [second / "dup"]}
    assert lib.elements_path == f"{first}:{second}"


def test_elements_path_searched_before_builtin(tmp_path: Path) -> None:
    make(tmp_path, "mine")
    lib = find_library({"ELEMENTS_PATH": str(tmp_path)}, include_packages=False)
    assert lib.search_path[0] == ("ELEMENTS_PATH", tmp_path)
    assert lib.search_path[-1] == ("built-in", builtin_elements_dir())
    assert lib["mine"].path == tmp_path / "mine"


def test_missing_elements_path_entry_is_an_error(tmp_path: Path) -> None:
    make(tmp_path / "ok", "a")
    with pytest.raises(ConfigError) as e:
        find_library({"ELEMENTS_PATH": f"{tmp_path / 'ok'}:{tmp_path / 'gone'}"})
    assert e.value.message == f"ELEMENTS_PATH entry is not a directory: {tmp_path / 'gone'}"
    assert e.value.hint


def test_empty_entries_ignored_and_same_dir_once(tmp_path: Path) -> None:
    make(tmp_path, "a")
    lib = find_library(
        {"ELEMENTS_PATH": f":{tmp_path}::{tmp_path}/"},
        include_packages=False,
        include_builtin=False,
    )
    assert [p for _, p in lib.search_path] == [tmp_path]
    assert lib.shadowed == {}


def test_dot_dirs_and_files_are_not_elements(tmp_path: Path) -> None:
    make(tmp_path, "real")
    (tmp_path / ".git").mkdir()
    (tmp_path / "README").write_text("x\n")
    lib = ElementLibrary.from_dirs([("t", tmp_path)])
    assert list(lib.elements) == ["real"]


# ---------------------------------------------------------------- a real element package


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def write_wheel(dest: Path, dist: str, files: dict[str, str], entry_points: str) -> Path:
    """A minimal pure-Python wheel holding ``files`` and the given entry_points.txt."""
    info = f"{dist}-0.1.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 0.1\n"
    )
    contents[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: dibpy-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    contents[f"{info}/entry_points.txt"] = entry_points
    record = [_record_line(name, text.encode()) for name, text in contents.items()]
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    whl = dest / f"{dist}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for name, text in contents.items():
            z.writestr(name, text)
    return whl


def pip_install(whl: Path, target: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(whl),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def element_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site dir where a package with two entry points (module and function) is installed."""
    tmp = tmp_path_factory.mktemp("pkg")
    pkg = "dibpy_extra_elements"
    whl = write_wheel(
        tmp,
        pkg,
        {
            f"{pkg}/__init__.py": "from pathlib import Path\n\n\n"
            "def other_dir():\n    return str(Path(__file__).parent / 'more')\n",
            f"{pkg}/elements/extra-el/README.rst": "An element from a package.\n",
            f"{pkg}/elements/extra-el/element-deps": "extra-two\n",
            f"{pkg}/more/extra-two/README.rst": "Another one.\n",
        },
        f"[dibpy.elements]\nextra = {pkg}\nextra2 = {pkg}:other_dir\n",
    )
    site = tmp / "site"
    pip_install(whl, site)
    assert (site / pkg / "elements" / "extra-el" / "README.rst").is_file()
    return site


def element_info(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("ELEMENTS_PATH", "PYTHONPATH")}
    full.update(env)
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "element-info"), *args],
        capture_output=True,
        text=True,
        env=full,
        check=False,
    )


def test_package_elements_found_without_elements_path(element_package: Path) -> None:
    r = element_info(
        "--no-os-check", "--json", "extra-el", env={"PYTHONPATH": str(element_package)}
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    found = {e["name"]: e for e in data["elements"]}
    assert set(found) == {"extra-el", "extra-two"}
    pkg = element_package / "dibpy_extra_elements"
    assert found["extra-el"]["path"] == str(pkg / "elements" / "extra-el")
    assert found["extra-el"]["origin"] == "package extra"
    assert found["extra-two"]["path"] == str(pkg / "more" / "extra-two")
    assert found["extra-two"]["origin"] == "package extra2"


def test_package_not_installed_means_not_found(element_package: Path) -> None:
    r = element_info("--no-os-check", "extra-el", env={})
    assert r.returncode != 0
    assert "element 'extra-el' not found" in r.stderr
    assert "Traceback" not in r.stderr


def test_elements_path_beats_package(element_package: Path, tmp_path: Path) -> None:
    make(tmp_path, "extra-el")
    r = element_info(
        "--no-os-check",
        "extra-el",
        env={"PYTHONPATH": str(element_package), "ELEMENTS_PATH": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["extra-el", str(tmp_path / "extra-el")]


def test_broken_entry_point_is_one_clear_error(tmp_path: Path) -> None:
    whl = write_wheel(
        tmp_path, "dibpy_broken_elements", {}, "[dibpy.elements]\nbroken = no_such_module_x\n"
    )
    site = tmp_path / "site"
    pip_install(whl, site)
    r = element_info("--no-os-check", "anything", env={"PYTHONPATH": str(site)})
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "element package entry point 'broken' failed to load" in r.stderr
    assert r.stderr.startswith("element-info: error:")
