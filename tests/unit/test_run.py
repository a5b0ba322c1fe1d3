"""The command runner (dibpy.run): errors, environment, stdin, streaming, interrupts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dibpy import run
from dibpy.errors import CommandError, ConfigError, Interrupted
from tests.conftest import process_alive

REPO = Path(__file__).resolve().parents[2]


def test_output_and_result() -> None:
    r = run.run(["bash", "-c", "echo out; echo err >&2; exit 0"])
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err")
    assert r.argv == ["bash", "-c", "echo out; echo err >&2; exit 0"]
    assert run.output(["echo", "  padded  "]) == "padded"


def test_paths_are_accepted_as_arguments(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("content\n")
    assert run.output(["cat", tmp_path / "f"]) == "content"


def test_command_error_names_command_status_and_stderr_tail() -> None:
    script = "for i in $(seq 1 40); do echo err-$i >&2; done; echo some-out; exit 3"
    with pytest.raises(CommandError) as e:
        run.run(["bash", "-c", script], hint="try again")
    err = e.value
    assert err.returncode == 3
    assert err.exit_code == 1  # the process exit code of the tool, not the child's
    msg = str(err)
    assert msg.startswith(f"command failed with exit status 3: bash -c {script}")
    assert "  | err-40" in msg and "  | err-21" in msg
    assert "err-20\n" not in msg  # only the last 20 lines
    assert "  | some-out" not in msg  # stderr is preferred when there is any
    assert err.hint == "try again" and msg.endswith("hint: try again")


def test_command_error_falls_back_to_stdout_tail() -> None:
    with pytest.raises(CommandError) as e:
        run.run(["bash", "-c", "echo only-stdout; exit 1"])
    assert "  | only-stdout" in str(e.value)


def test_check_false_returns_status() -> None:
    assert run.run(["false"], check=False).returncode == 1
    assert run.run(["bash", "-c", "exit 42"], check=False).returncode == 42


def test_missing_program_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="required program not found: no-such-program-xyz"):
        run.run(["no-such-program-xyz", "--help"])


def test_lc_all_pinned_and_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    monkeypatch.setenv("DIBPY_INHERITED", "yes")
    out = run.output(
        ["bash", "-c", 'echo "$LC_ALL ${DIBPY_INHERITED:-no} ${MINE:-no}"'],
        env={"MINE": "given", "LC_ALL": "fr_FR"},
    )
    assert out == "C yes given"
    out = run.output(
        ["bash", "-c", 'echo "$LC_ALL ${DIBPY_INHERITED:-no} $PATH"'], env={}, inherit_env=False
    )
    lc, inherited, path = out.split()
    assert (lc, inherited) == ("C", "no") and "/usr/bin" in path


def test_cwd(tmp_path: Path) -> None:
    assert run.output(["pwd"], cwd=tmp_path) == str(tmp_path)


def test_input_is_fed_and_stdin_closed_otherwise() -> None:
    assert run.output(["cat"], input="fed\n") == "fed"
    assert run.output(["cat"]) == ""


def test_stdin_closed_even_when_ours_is_open() -> None:
    """A child must not read our stdin: here it is a pipe nobody writes to, so cat would hang."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from dibpy import run
        print(repr(run.output(["cat"])))
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = p.communicate(timeout=20)  # communicate closes our end only after it returns
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("the child read the parent's stdin")
    finally:
        if p.stdin:
            p.stdin.close()
    assert out.strip() == "''"


def test_on_line_streams_while_running(tmp_path: Path) -> None:
    """The callback sees a line before the command ends: the child waits for its reaction."""
    flag = tmp_path / "flag"
    script = (
        f"echo first; for i in $(seq 100); do [ -e {flag} ] && {{ echo saw-flag; exit 0; }}; "
        "sleep 0.05; done; echo timed-out"
    )
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "first":
            flag.touch()

    r = run.run(["bash", "-c", script], on_line=on_line)
    assert seen == ["first", "saw-flag"]
    assert r.stdout == ""  # streamed lines are not collected as well


def test_stderr_to_stdout() -> None:
    seen: list[str] = []
    run.run(
        ["bash", "-c", "echo a; echo b >&2; echo c"], on_line=seen.append, stderr_to_stdout=True
    )
    assert sorted(seen) == ["a", "b", "c"]


def test_fake_runner_seam() -> None:
    calls: list[list[str]] = []

    def fake(argv: list[str], **kw: object) -> run.Result:
        calls.append(argv)
        return run.Result(argv, 0, "faked\n", "")

    with run.fake_runner(fake):
        assert run.output(["losetup", "--show", "-f", Path("/x")]) == "faked"
    assert calls == [["losetup", "--show", "-f", "/x"]]
    assert run.output(["echo", "real"]) == "real"  # restored


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # a zombie leader still counts for killpg; look at the leader itself
    return process_alive(pgid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_kills_the_child_process_group(tmp_path: Path, sig: signal.Signals) -> None:
    pidfile = tmp_path / "pid"
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from dibpy import run
        run.install_signal_handlers()
        try:
            run.run(["bash", "-c", "echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; "
                     "sleep 60; sleep 60"])
        except BaseException as e:
            print(type(e).__name__, e, flush=True)
            sys.exit(5)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if pidfile.exists():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never started")
        pgid = int(pidfile.read_text())
        assert os.getpgid(pgid) == pgid  # the child leads its own group
        assert _group_alive(pgid)
        time.sleep(0.2)  # let bash start its sleep
        p.send_signal(sig)
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 5
    # SIGINT too: the build's handlers make every first signal an Interrupted
    assert out.startswith("Interrupted")
    assert sig.name in out
    for _ in range(40):
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    assert not _group_alive(pgid), "the child's process group survived the interrupt"


def test_a_second_signal_does_not_interrupt_the_cleanup(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup-finished"
    code = textwrap.dedent(
        f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from dibpy import run
        from dibpy.errors import Interrupted
        run.install_signal_handlers()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Interrupted:
            print("cleaning", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)  # the second one, during cleanup
            time.sleep(0.2)
            open({str(marker)!r}, "w").close()
            sys.exit(7)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 7, r.stderr
    assert marker.exists(), "the second signal interrupted the cleanup"
    assert "while cleaning up" in r.stderr


def test_signal_handlers_are_restored_after_the_command() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    with run.signal_handlers():
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(5)
    # a library caller (or pytest) gets its own handlers back: Ctrl-C is a KeyboardInterrupt
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_child_killed_by_a_signal_is_a_command_error_naming_the_signal() -> None:
    with pytest.raises(CommandError) as e:
        run.run(["bash", "-c", "echo dying >&2; kill -KILL $$"])
    msg = str(e.value)
    assert msg.startswith("command was killed by SIGKILL: bash -c"), msg
    assert e.value.returncode == -9 and "  | dying" in msg
    assert run.run(["bash", "-c", "kill -TERM $$"], check=False).returncode == -15


def test_a_shell_reporting_a_killed_child_says_which_signal() -> None:
    with pytest.raises(CommandError, match=r"exit status 137 \(128\+SIGKILL"):
        run.run(["bash", "-c", "bash -c 'kill -KILL $$'; exit $?"])


def test_timeout_kills_the_group_and_names_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandError) as e:
        run.run(["bash", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert str(e.value).startswith("command timed out after 0.5 s: bash -c"), str(e.value)
    pid = int(pidfile.read_text())
    for _ in range(50):
        if not process_alive(pid):
            break
        time.sleep(0.1)
    assert not process_alive(pid), "the timed-out command's child survived"


def test_a_program_that_cannot_start_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"^command could not start \(.*No such file"):
        run.run(["true"], cwd=tmp_path / "missing")
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="is not executable"):
        run.run([str(tmp_path / "not-executable")])


def test_a_signal_while_the_child_starts_still_stops_the_child(tmp_path: Path) -> None:
    # the child signals us at once: the signal lands while sh is still starting it, before
    # run() holds its pid; the child must not be left running
    pidfile = tmp_path / "pid"
    with run.signal_handlers(), pytest.raises(Interrupted, match="SIGTERM"):
        run.run(["bash", "-c", f"echo $$ > {pidfile}; kill -TERM $PPID; exec sleep 60"])
    pid = int(pidfile.read_text())
    for _ in range(50):
        if not process_alive(pid):
            break
        time.sleep(0.1)
    assert not process_alive(pid), "the child outlived the interrupted run()"
