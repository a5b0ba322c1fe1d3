"""Shell completion: the generated scripts run in a real bash and zsh, and complete
element names from the element path and output types."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.cli.completion import element_names, script

BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # the scripts ask `dibpy completion --list ...`: the dibpy of this interpreter
    return {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LC_ALL": "C",
        **extra,
    }


def complete_bash(tmp_path: Path, words: list[str], **env: str) -> list[str]:
    """What bash's completion offers for the last of ``words`` (COMP_WORDS/COMP_CWORD
    driving the function the script registered with ``complete -F``)."""
    comp = tmp_path / "completion.bash"
    comp.write_text(script("bash"))
    quoted = " ".join(f"'{w}'" for w in words)
    driver = f"""
source {comp}
spec=$(complete -p {words[0]})
fn=${{spec#*-F }}; fn=${{fn%% *}}
COMP_WORDS=({quoted})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$fn" "{words[0]}" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", driver],
        capture_output=True,
        text=True,
        env=_env(tmp_path, **env),
    )
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_bash_completes_element_names(tmp_path: Path) -> None:
    offered = complete_bash(tmp_path, ["disk-image-create", "deb"])
    assert "debian" in offered and "debian-minimal" in offered
    assert all(o.startswith("deb") for o in offered)


def test_bash_completes_elements_from_elements_path(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "debian-custom").mkdir(parents=True)
    (mine / "debian-custom" / "README.rst").write_text("mine\n")
    offered = complete_bash(tmp_path, ["disk-image-create", "debian-c"], ELEMENTS_PATH=str(mine))
    assert offered == ["debian-custom"]
    # a missing ELEMENTS_PATH entry does not break completion
    offered = complete_bash(
        tmp_path, ["element-info", "debian-m"], ELEMENTS_PATH=f"{tmp_path}/nope:{mine}"
    )
    assert offered == ["debian-minimal"]


def test_bash_completes_output_types_subcommands_and_options(tmp_path: Path) -> None:
    assert complete_bash(tmp_path, ["disk-image-create", "-o", "x", "-t", "qc"]) == ["qcow2"]
    assert "vhdx" in complete_bash(tmp_path, ["ramdisk-image-create", "-t", "vh"])
    assert complete_bash(tmp_path, ["dibpy", "boot"]) == ["boot-test"]
    assert "debian-minimal" in complete_bash(tmp_path, ["dibpy", "build", "-n", "debian-m"])
    assert "--image-size" in complete_bash(tmp_path, ["dibpy", "build", "--image-s"])
    assert complete_bash(tmp_path, ["dib-lint", "--list-r"]) == ["--list-rules"]


def test_the_element_list_is_the_library() -> None:
    names = element_names({"ELEMENTS_PATH": ""})
    assert "debian-minimal" in names and "vm" in names
    assert names == sorted(set(names))


def test_dibpy_completion_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from dibpy.cli.main import main

    assert main(["completion", "--list", "types"]) == 0
    assert "qcow2" in capsys.readouterr().out.split()
    assert main(["completion", "bash"]) == 0
    assert "complete -o bashdefault -F _shtab_disk_image_create disk-image-create" in (
        capsys.readouterr().out
    )


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (./dev setup)")
def test_zsh_script_loads_and_registers_every_command(tmp_path: Path) -> None:
    comp = tmp_path / "completion.zsh"
    comp.write_text(script("zsh"))
    r = subprocess.run(["zsh", "-n", str(comp)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    check = f"""
autoload -U compinit && compinit -u -d {tmp_path}/.zcompdump
eval "$(<{comp})"
for c in disk-image-create ramdisk-image-create element-info dibpy dib-run-parts; do
  print -r -- "$c=${{_comps[$c]}}"
done
"""
    r = subprocess.run(
        ["zsh", "-f", "-c", check], capture_output=True, text=True, env=_env(tmp_path)
    )
    assert r.returncode == 0 and not r.stderr, r.stderr
    got = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert got["disk-image-create"] == "_shtab_disk_image_create"
    assert all(got.values()), got


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (./dev setup)")
def test_zsh_completes_element_names(tmp_path: Path) -> None:
    """A real interactive zsh (on a pseudo-terminal, zsh/zpty) typing
    ``disk-image-create deb<TAB>``; compadd is wrapped to record what is offered."""
    comp = tmp_path / "completion.zsh"
    comp.write_text(script("zsh"))
    hits, done = tmp_path / "hits", tmp_path / "done"
    driver = f"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'autoload -U compinit; compinit -u -d {tmp_path}/.zcompdump'
zpty -w z 'eval "$(<{comp})"'
zpty -w z 'compadd() {{ local -a h; builtin compadd -O h "$@"; print -rl -- $h >> {hits}; '\\
'builtin compadd "$@" }}'
zpty -w -n z $'disk-image-create deb\\t'
# the completion system skips work while input is pending: wait for its first match,
# then clear the line (^U) and run a command, which runs once the completion is done
for i in {{1..600}}; do [[ -s {hits} ]] && break; sleep 0.1; done
zpty -w z $'\\x15: > {done}'
for i in {{1..600}}; do [[ -e {done} ]] && break; sleep 0.1; done
zpty -d z
"""
    r = subprocess.run(
        ["zsh", "-f", "-c", driver],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert done.exists(), "the completion did not finish"
    offered = hits.read_text().split() if hits.exists() else []
    assert "debian" in offered and "debian-minimal" in offered, (offered, r.stderr)
    assert all(o.startswith("deb") for o in offered)
