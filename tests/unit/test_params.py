"""Declared element parameters (parameters.yaml): the file's format, the values checked
before anything runs, --strict for unread DIB_* variables, element-info --params, and
the declarations of every element dibpy ships."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.build import plan
from dibpy.config import SETTINGS, build_config
from dibpy.elements import params
from dibpy.elements.model import Element
from dibpy.errors import ElementError, MultiError
from tests.conftest import REPO, write

ELEMENTS = REPO / "elements"
pytestmark = pytest.mark.usefixtures("clean_env")


def element(root: Path, name: str, decl: str | None, hook: str = "", deps: str = "") -> Path:
    d = root / name
    write(d / "README.rst", f"{name}\n")
    if decl is not None:
        write(d / "parameters.yaml", decl)
    if hook:
        write(d / "install.d" / "10-hook", f"#!/bin/bash\n{hook}\n", 0o755)
    if deps:
        write(d / "element-deps", deps + "\n")
    return d


def plan_env(tmp_path: Path, elements: list[str], **env: str) -> None:
    cfg = build_config(
        {"output": str(tmp_path / "img")},
        elements,
        {"ELEMENTS_PATH": str(tmp_path / "els"), **env},
    )
    plan(cfg)


# -- the file -------------------------------------------------------------------------


def test_a_declaration_is_read_into_the_element(tmp_path: Path) -> None:
    d = element(
        tmp_path,
        "colours",
        "DIB_COLOUR:\n  type: enum\n  choices: [red, blue]\n  default: red\n"
        "  description: the colour\nDIB_COUNT:\n  type: integer\n  default: 3\n"
        "  description: how many\nDIB_ON:\n  type: boolean\n  default: true\n"
        "  description: on or off\n",
    )
    ps = Element("colours", d).parameters
    assert list(ps) == ["DIB_COLOUR", "DIB_COUNT", "DIB_ON"]
    assert ps["DIB_COLOUR"].choices == ("red", "blue")
    assert ps["DIB_COUNT"].default == "3"
    assert ps["DIB_ON"].default == "1"
    assert ps["DIB_COLOUR"].element == "colours"


def test_an_element_without_the_file_declares_nothing(tmp_path: Path) -> None:
    assert Element("plain", element(tmp_path, "plain", None)).parameters == {}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("DIB_X:\n  type: colour\n  description: x\n", ".DIB_X.type"),
        ("DIB_X:\n  type: enum\n  description: x\n", ".DIB_X: 'choices' is a required"),
        ("DIB_X:\n  type: string\n", ".DIB_X: 'description' is a required"),
        ("DIB_X:\n  type: string\n  description: x\n  defualt: 1\n", ".DIB_X: Additional"),
        ("- DIB_X\n", "(top)"),
        ("DIB-X:\n  type: string\n  description: x\n", "(top)"),
    ],
)
def test_a_malformed_file_is_one_line_naming_element_file_and_yaml_path(
    tmp_path: Path, text: str, where: str
) -> None:
    d = element(tmp_path, "broken", text)
    with pytest.raises(ElementError) as e:
        _ = Element("broken", d).parameters
    msg = e.value.message
    assert "\n" not in msg
    assert msg.startswith(f"element 'broken': {d / 'parameters.yaml'}: ")
    assert where in msg


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    d = element(tmp_path, "broken", "DIB_X:\n  type: [string\n")
    with pytest.raises(
        ElementError, match=r"element 'broken': .*parameters.yaml:\d+: invalid YAML"
    ):
        _ = Element("broken", d).parameters


def test_an_enum_default_outside_its_choices_is_refused(tmp_path: Path) -> None:
    d = element(
        tmp_path, "e", "DIB_X:\n  type: enum\n  choices: [a, b]\n  default: c\n  description: x\n"
    )
    with pytest.raises(ElementError, match=r"\.DIB_X\.default: 'c' is not one of its choices"):
        _ = Element("e", d).parameters


def test_every_shipped_parameters_file_is_valid() -> None:
    files = sorted(ELEMENTS.glob("*/parameters.yaml"))
    assert len(files) > 40
    for f in files:
        ps = Element(f.parent.name, f.parent).parameters
        assert ps, f"{f}: declares nothing"
        for p in ps.values():
            assert p.default is None or p.problem(p.default) is None, (f, p.name)


# -- the values -----------------------------------------------------------------------


def _param(type_: str, **kw: object) -> params.Parameter:
    return params.Parameter(name="DIB_X", type=type_, description="x", element="e", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("type_", "kw", "good", "bad"),
    [
        ("string", {}, ["", "anything at all"], []),
        ("integer", {"min": 0, "max": 10}, ["0", "10", " 7 "], ["-1", "11", "1.5", "five"]),
        ("boolean", {}, ["1", "0", "yes", "False", "ON"], ["2", "maybe"]),
        ("enum", {"choices": ("a", "b")}, ["a", "b"], ["c", "A"]),
        ("size", {}, ["10", "512M", "3G", "1.5GiB", "100 KB"], ["big", "3X", "-1G"]),
        ("list", {"choices": ("x", "y")}, ["x", "x,y", "y x"], ["x,z"]),
        ("list", {}, ["any, thing"], []),
        ("path", {}, ["/etc/x", "rel/path"], ["a\0b"]),
    ],
)
def test_each_type_accepts_and_refuses(
    type_: str, kw: dict[str, object], good: list[str], bad: list[str]
) -> None:
    p = _param(type_, **kw)
    for v in good:
        assert p.problem(v) is None, v
    for v in bad:
        assert p.problem(v), v


def test_bad_values_are_all_reported_in_one_pass_before_anything_exists(tmp_path: Path) -> None:
    els = tmp_path / "els"
    element(
        els,
        "my-os",
        "DIB_RELEASE:\n  type: enum\n  choices: [bookworm, trixie]\n  description: release\n"
        "DIB_MY_COUNT:\n  type: integer\n  description: a count\n",
    )
    write(els / "my-os" / "element-provides", "operating-system\n")
    with pytest.raises(MultiError) as e:
        plan_env(
            tmp_path,
            ["my-os"],
            DIB_RELEASE="trixy",
            DIB_MY_COUNT="lots",
        )
    assert (
        "element 'my-os': DIB_RELEASE='trixy': not one of bookworm, trixie; did you mean trixie? "
        "(parameters.yaml)" in e.value.problems
    )
    assert (
        "element 'my-os': DIB_MY_COUNT='lots': not an integer (parameters.yaml)" in e.value.problems
    )
    assert "element-info --params" in (e.value.hint or "")
    assert not list(tmp_path.glob("dib_build.*"))


def test_a_bad_shipped_value_fails_in_one_line(tmp_path: Path) -> None:
    cfg = build_config(
        {"output": str(tmp_path / "img")},
        ["debian-minimal", "vm"],
        {"ELEMENTS_PATH": str(ELEMENTS), "DIB_DEBOOTSTRAP_TOOL": "mmdebstrapp"},
    )
    with pytest.raises(MultiError) as e:
        plan(cfg)
    assert e.value.problems == [
        "elements 'debian-minimal', 'debootstrap': DIB_DEBOOTSTRAP_TOOL='mmdebstrapp': not one "
        "of debootstrap, mmdebstrap, auto; did you mean mmdebstrap? (parameters.yaml)"
    ]


RELEASE_WARNING = (
    "element 'debian-minimal': DIB_RELEASE='trixy': not a value known to be valid: bookworm, "
    "trixie, forky, bullseye, buster, stretch, jessie, duke, sid, stable, testing, unstable, "
    "oldstable, oldoldstable; did you mean trixie? (parameters.yaml)"
)


def test_an_unknown_release_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A release name debian-minimal does not know may be a private mirror's suite: the
    build goes on with a did-you-mean warning; --strict refuses it."""
    env = {"ELEMENTS_PATH": str(ELEMENTS), "DIB_RELEASE": "trixy"}
    with caplog.at_level(logging.WARNING, logger="dibpy"):
        plan(build_config({"output": str(tmp_path / "img")}, ["debian-minimal", "vm"], env))
    assert RELEASE_WARNING in caplog.messages
    strict = build_config(
        {"output": str(tmp_path / "img"), "strict": True}, ["debian-minimal", "vm"], env
    )
    with pytest.raises(MultiError) as e:
        plan(strict)
    assert e.value.problems == [RELEASE_WARNING]


def test_a_required_parameter_that_is_unset_is_named(tmp_path: Path) -> None:
    els = tmp_path / "els"
    element(els, "needs", "DIB_NEEDED:\n  type: path\n  required: true\n  description: a file\n")
    write(els / "needs" / "element-provides", "operating-system\n")
    with pytest.raises(MultiError, match=r"element 'needs': DIB_NEEDED is required but not set"):
        plan_env(tmp_path, ["needs"])


def test_a_family_checks_every_variable_it_starts(tmp_path: Path) -> None:
    els = tmp_path / "els"
    element(
        els,
        "fam",
        "DIB_KIND_:\n  type: enum\n  choices: [source, package]\n  description: per name\n",
    )
    write(els / "fam" / "element-provides", "operating-system\n")
    with pytest.raises(MultiError) as e:
        plan_env(
            tmp_path,
            ["fam"],
            DIB_KIND_a="source",
            DIB_KIND_b="binary",
        )
    assert e.value.problems == [
        "element 'fam': DIB_KIND_b='binary': not one of source, package (parameters.yaml)"
    ]


def test_a_broken_file_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    els = tmp_path / "els"
    element(els, "my-os", "DIB_A:\n  type: nope\n  description: x\n")
    write(els / "my-os" / "element-provides", "operating-system\n")
    element(els, "other", "DIB_N:\n  type: integer\n  description: n\n")
    with pytest.raises(MultiError) as e:
        plan_env(tmp_path, ["my-os", "other"], DIB_N="x")
    assert len(e.value.problems) == 2
    assert e.value.problems[0].startswith("element 'my-os': ")
    assert e.value.problems[1] == "element 'other': DIB_N='x': not an integer (parameters.yaml)"


def test_an_undeclared_element_is_not_checked(tmp_path: Path) -> None:
    els = tmp_path / "els"
    element(els, "third-party", None, hook='echo "${DIB_THIRD_PARTY_THING:-}"')
    write(els / "third-party" / "element-provides", "operating-system\n")
    plan_env(tmp_path, ["third-party"], DIB_THIRD_PARTY_THING="x y z")


# -- unread variables and --strict ----------------------------------------------------


def _unread(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not read by any element" in r.getMessage()]


def test_a_declared_name_counts_as_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    els = tmp_path / "els"
    # the hook reads it through a computed name: only the declaration names it
    element(
        els,
        "my-os",
        "DIB_SHADE_OF_GREY:\n  type: string\n  description: computed\n",
        hook='v=DIB_SHADE_OF_$1; echo "${!v}"',
    )
    write(els / "my-os" / "element-provides", "operating-system\n")
    with caplog.at_level(logging.WARNING):
        plan_env(tmp_path, ["my-os"], DIB_SHADE_OF_GREY="dark")
    assert _unread(caplog) == []


def test_strict_makes_an_unread_variable_an_error(tmp_path: Path) -> None:
    cfg = build_config(
        {"output": str(tmp_path / "img"), "strict": True},
        ["debian-minimal", "vm"],
        {"ELEMENTS_PATH": str(ELEMENTS), "DIB_RELASE": "trixie"},
    )
    with pytest.raises(MultiError) as e:
        plan(cfg)
    assert e.value.problems == [
        "DIB_RELASE: not read by any element of this build nor by dibpy; did you mean DIB_RELEASE?"
    ]
    assert "--strict" in (e.value.hint or "")


def test_dib_strict_is_the_variable_of_strict(tmp_path: Path) -> None:
    cfg = build_config(
        {"output": str(tmp_path / "img")},
        ["debian-minimal", "vm"],
        {"ELEMENTS_PATH": str(ELEMENTS), "DIB_RELASE": "trixie", "DIB_STRICT": "1"},
    )
    assert cfg.strict
    with pytest.raises(MultiError, match="did you mean DIB_RELEASE"):
        plan(cfg)
    assert not build_config({"output": str(tmp_path / "img")}, ["x"], {"DIB_STRICT": "0"}).strict


def test_without_strict_it_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = build_config(
        {"output": str(tmp_path / "img")},
        ["debian-minimal", "vm"],
        {"ELEMENTS_PATH": str(ELEMENTS), "DIB_RELASE": "trixie"},
    )
    with caplog.at_level(logging.WARNING):
        plan(cfg)
    assert _unread(caplog) == [
        "DIB_RELASE: not read by any element of this build nor by dibpy; did you mean DIB_RELEASE?"
    ]


def test_strict_is_an_option_of_every_build_command() -> None:
    from dibpy.cli.disk_image_create import build_parser

    for prog in ("disk-image-create", "ramdisk-image-create"):
        assert build_parser(prog).parse_args(["--strict", "x"]).strict is True
    assert any(s.dest == "strict" and s.env == "DIB_STRICT" for s in SETTINGS)


# -- the shipped elements declare what they read --------------------------------------

_NAME = re.compile(r"DIB_[A-Za-z0-9_]*")

#: read by shipped elements but declared by none, and why
EXEMPT = {
    "DIB_": "manifests: the DIB_* prefix itself, to record every variable",
    "DIB_BLOCK_DEVICE": "set (not read from the user) by the block-device-* elements",
}


def _dibpy_owned() -> set[str]:
    """Variables dibpy itself reads (its settings) or sets for every hook (hookenv.py):
    documented in doc/compatibility.md, not by an element."""
    names = {n for s in SETTINGS for n in s.env_names}
    names |= set(_NAME.findall((REPO / "dibpy" / "hookenv.py").read_text()))
    names |= {"DIB_DEBUG_TRACE", "DIB_ARGS", "DIB_ENV", "DIB_PYTHON_EXEC"}
    return names


def _closure(name: str, library: dict[str, Element]) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n in seen or n not in library:
            continue
        seen.add(n)
        todo += library[n].depends
    return seen


def _referenced(e: Element) -> set[str]:
    names: set[str] = set()
    for f in e.path.rglob("*"):
        if f.is_file() and not f.name.startswith("README") and f.name != params.FILENAME:
            names |= set(_NAME.findall(f.read_text(errors="replace")))
    return names


def test_every_shipped_element_declares_the_variables_its_files_read() -> None:
    library = {d.name: Element(d.name, d) for d in sorted(ELEMENTS.iterdir()) if d.is_dir()}
    owned = _dibpy_owned() | set(EXEMPT)
    missing = []
    for name, e in library.items():
        # base (added to every build without -n) and what it pulls in come with every element
        deps = _closure(name, library) | _closure("base", library)
        declared = {n for dep in deps for n in library[dep].parameters}
        for var in sorted(_referenced(e) - owned - declared):
            missing.append(f"{name}: {var}")
    assert not missing, f"declare them in the element's parameters.yaml: {missing}"


def test_the_exemptions_are_still_needed() -> None:
    referenced = set().union(
        *(_referenced(Element(d.name, d)) for d in ELEMENTS.iterdir() if d.is_dir())
    )
    assert set(EXEMPT) <= referenced


# -- element-info --params ------------------------------------------------------------


def element_info(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "ELEMENTS_PATH" and k[:4] != "DIB_"}
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "element-info"), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=REPO,
        check=False,
    )


def test_params_prints_value_source_element_and_description() -> None:
    r = element_info("--params", "debian-minimal", "devuser", DIB_DEV_USER_USERNAME="me")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    cells = [re.split(r"\s{2,}", line) for line in lines]
    assert cells[0] == ["NAME", "VALUE", "SOURCE", "ELEMENT", "DESCRIPTION"]
    rows = {c[0] + "@" + c[3]: c for c in cells[1:]}
    assert rows["DIB_DEV_USER_USERNAME@devuser"][1:4] == ["me", "environment", "devuser"]
    assert rows["DIB_DEV_USER_SHELL@devuser"][1:4] == ["/bin/bash", "default", "devuser"]
    assert rows["DIB_DEV_USER_PASSWORD@devuser"][1:4] == ["-", "unset", "devuser"]
    # debian-minimal's environment.d sets the release when the user does not
    release = rows["DIB_RELEASE@debian-minimal"]
    assert release[1:3] == ["bookworm", "environment.d (debian-minimal/10-debian-minimal.bash)"]
    assert release[4] == "the Debian release (a code name or suite)"


def test_params_json() -> None:
    r = element_info(
        "--params", "--json", "debian-minimal", "source-repositories", DIB_RELEASE="trixie",
        DIB_REPOREF_foo="v1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["parameters"]
    by = {(p["name"], p["element"]): p for p in rows}
    rel = by["DIB_RELEASE", "debian-minimal"]
    assert rel["value"] == "trixie"
    assert rel["source"] == "environment"
    assert rel["type"] == "enum"
    assert "bookworm" in rel["choices"]
    assert rel["description"]
    assert by["DIB_REPOREF_foo", "source-repositories"]["value"] == "v1"
    assert by["DIB_REPOTYPE_*", "source-repositories"]["source"] == "unset"
    variant = by["DIB_DEBOOTSTRAP_VARIANT", "debootstrap"]
    assert (variant["value"], variant["source"]) == ("minbase", "default")


def test_params_of_undeclared_elements(tmp_path: Path) -> None:
    element(tmp_path, "quiet-os", None)
    write(tmp_path / "quiet-os" / "element-provides", "operating-system\n")
    r = element_info("--params", "quiet-os", ELEMENTS_PATH=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "(no element of this build declares parameters)\n"


def test_params_with_a_broken_file_is_one_line(tmp_path: Path) -> None:
    element(tmp_path, "bad-os", "DIB_X: 3\n")
    write(tmp_path / "bad-os" / "element-provides", "operating-system\n")
    r = element_info("--params", "bad-os", ELEMENTS_PATH=str(tmp_path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "element 'bad-os': " in r.stderr
    assert ".DIB_X: 3 is not of type 'object'" in r.stderr


def test_params_and_env_are_exclusive() -> None:
    r = element_info("--params", "--env", "debian-minimal")
    assert r.returncode == 2
    assert "--params and --env" in r.stderr


def test_effective_values_follow_the_environment_d_rules(tmp_path: Path) -> None:
    d = element(
        tmp_path,
        "e",
        "DIB_A:\n  type: string\n  description: a\nDIB_B:\n  type: string\n  description: b\n"
        "DIB_C:\n  type: string\n  default: dflt\n  description: c\n",
    )
    write(
        d / "environment.d" / "10-e.bash",
        "export DIB_A=${DIB_A:-from-envd}\nexport DIB_B=fixed\n",
    )
    e = Element("e", d)
    got = {r.name: (r.value, r.source) for r in params.effective([e], {"DIB_A": "mine"})}
    assert got["DIB_A"] == ("mine", "environment")
    assert got["DIB_B"] == ("fixed", "environment.d (e/10-e.bash)")
    assert got["DIB_C"] == ("dflt", "default")
    got = {r.name: (r.value, r.source) for r in params.effective([e], {"DIB_B": "mine"})}
    assert got["DIB_A"] == ("from-envd", "environment.d (e/10-e.bash)")
    assert got["DIB_B"] == ("fixed", "environment.d (e/10-e.bash)")


def test_dib_lint_checks_the_file(tmp_path: Path) -> None:
    from dibpy.lint import lint

    element(tmp_path, "e", "DIB_X:\n  type: enum\n  description: x\n")
    found = [(p.element, p.file, p.rule, p.message) for p in lint([tmp_path]).problems]
    assert found == [
        ("e", "parameters.yaml", "parameters", ".DIB_X: 'choices' is a required property")
    ]
    assert not lint([ELEMENTS], shellcheck=False).problems


def test_the_yaml_front_end_names_the_yaml_file_as_the_source(tmp_path: Path) -> None:
    f = tmp_path / "images.yaml"
    f.write_text(
        "- imagename: one\n  elements: [debian-minimal, devuser]\n"
        "  environment:\n    DIB_DEV_USER_USERNAME: yaml-user\n"
        "- imagename: two\n  elements: [debian-minimal]\n  skip-base: true\n"
    )
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "diskimage-builder"), "--params", "--json", str(f)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "ELEMENTS_PATH" and k[:4] != "DIB_"}
        | {"DIB_DEV_USER_SHELL": "/bin/sh"},
        cwd=REPO,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    images = json.loads(r.stdout)["images"]
    assert [i["imagename"] for i in images] == ["one", "two"]
    one = {p["name"]: p for p in images[0]["parameters"]}
    assert (one["DIB_DEV_USER_USERNAME"]["value"], one["DIB_DEV_USER_USERNAME"]["source"]) == (
        "yaml-user",
        "YAML file",
    )
    assert one["DIB_DEV_USER_SHELL"]["source"] == "environment"
    assert "DIB_DEV_USER_USERNAME" not in {p["name"] for p in images[1]["parameters"]}
    text = subprocess.run(
        [sys.executable, str(REPO / "bin" / "diskimage-builder"), "--params", str(f)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("image one:\nNAME ")
    assert "\nimage two:\nNAME " in text.stdout


def test_the_same_problem_from_two_declarations_is_one_line(tmp_path: Path) -> None:
    cfg = build_config(
        {"output": str(tmp_path / "img")},
        ["debian-minimal", "vm"],
        {"ELEMENTS_PATH": str(ELEMENTS), "DIB_DEBOOTSTRAP_TOOL": "cdebootstrap"},
    )
    with pytest.raises(MultiError) as e:
        plan(cfg)
    assert e.value.problems == [
        "elements 'debian-minimal', 'debootstrap': DIB_DEBOOTSTRAP_TOOL='cdebootstrap': not one "
        "of debootstrap, mmdebstrap, auto; did you mean debootstrap? (parameters.yaml)"
    ]


def test_the_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(params.SCHEMA.read_text()))
