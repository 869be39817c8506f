"""The command line: bad config stops start-up with one clear line naming the key and
exit code 2; flags win over the file; ./chatd.toml is read when present; check-config;
`python -m chatd --help` (issue 2)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chatd import cli
from tests.helpers.protocol import err_code
from tests.helpers.server import ROOT, Child, Client, StartServer, free_port

SpawnServer = Callable[..., Child]


def run_chatd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatd", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def one_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# (file contents, the key the error line must name)
BAD_CONFIGS = [
    ("[chat]\nmax_sesions_per_user = 3\n", "chat.max_sesions_per_user"),
    ("[chatt]\nhistory_on_join = 3\n", "chatt"),
    ('[server]\nport = "eighty"\n', "server.port"),
    ("[server]\nport = 70000\n", "server.port"),
    ('[server]\nuvloop = "yes"\n', "server.uvloop"),
    ('[server]\ntimezone = "Mars/Olympus_Mons"\n', "server.timezone"),
    ("[limits]\nmax_line_bytes = 0\n", "limits.max_line_bytes"),
    ("[limits]\nmax_line_bytes = 4096.5\n", "limits.max_line_bytes"),
    ("[moderation]\nban_duration_s = -5\n", "moderation.ban_duration_s"),
    ('[moderation]\nadmins = "root"\n', "moderation.admins"),
    ("[chat]\nhistory_on_join = true\n", "chat.history_on_join"),
    ('[log]\nlevel = "loud"\n', "log.level"),
    ('[store]\nsynchronous = "sometimes"\n', "store.synchronous"),
    ('[auth]\nrequire_password = "no"\n', "auth.require_password"),
    ("server = 3\n", "server"),
]


@pytest.mark.parametrize(("text", "key"), BAD_CONFIGS)
def test_bad_config_file_is_one_line_naming_the_key_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert cli.main(["--config", str(path), "--data-dir", str(tmp_path / "d")]) == 2
    out = capsys.readouterr()
    assert key in one_line(out.err)
    assert out.out == ""
    assert not (tmp_path / "d").exists()  # nothing was started


@pytest.mark.parametrize(("text", "key"), BAD_CONFIGS[:3])
def test_check_config_reports_the_same_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert cli.main(["check-config", str(path)]) == 2
    assert key in one_line(capsys.readouterr().err)


def test_bad_config_exits_2_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "chatd.toml").write_text("[limits]\nmax_line_bytes = -1\n")
    r = run_chatd("--port", str(free_port()), cwd=tmp_path)  # ./chatd.toml is read
    assert r.returncode == 2
    assert "limits.max_line_bytes" in one_line(r.stderr)
    assert "Traceback" not in r.stderr
    path = tmp_path / "other.toml"
    path.write_text("[server]\nnope = 1\n")
    r = run_chatd("check-config", str(path), cwd=tmp_path)
    assert r.returncode == 2 and "server.nope" in one_line(r.stderr)


def test_not_toml_and_missing_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[server\nport = \n")
    assert cli.main(["--config", str(bad)]) == 2
    assert "broken.toml" in one_line(capsys.readouterr().err)
    assert cli.main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in one_line(capsys.readouterr().err)


def test_bad_flag_values_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--port", "70000", "--data-dir", str(tmp_path / "d")]) == 2
    assert "port" in one_line(capsys.readouterr().err)
    for argv in (["--port", "eighty"], ["--log-level", "loud"], ["--frobnicate"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
    capsys.readouterr()


def test_check_config_accepts_good_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The repository's chatd.toml lists every setting with its default: it must load.
    assert cli.main(["check-config", str(ROOT / "chatd.toml")]) == 0
    good = tmp_path / "good.toml"
    good.write_text('[server]\nport = 9000\ntimezone = "UTC"\n[moderation]\nadmins = ["root"]\n')
    assert cli.main(["check-config", str(good)]) == 0
    capsys.readouterr()


def test_check_config_defaults_to_dot_chatd_toml(tmp_path: Path) -> None:
    (tmp_path / "chatd.toml").write_text("[chat]\nhistory_on_join = 5\n")
    r = run_chatd("check-config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "chatd.toml").write_text("[chat]\nhistory_on_join = -5\n")
    r = run_chatd("check-config", cwd=tmp_path)
    assert r.returncode == 2 and "chat.history_on_join" in one_line(r.stderr)


def test_help_and_version(tmp_path: Path) -> None:
    r = run_chatd("--help", cwd=tmp_path)
    assert r.returncode == 0
    for word in ("--port", "--host", "--config", "--data-dir", "--log-level", "check-config"):
        assert word in r.stdout
    r = run_chatd("--version", cwd=tmp_path)
    assert r.returncode == 0 and "chatd" in r.stdout


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_dot_chatd_toml_is_read_and_flags_win(
    spawn_server: SpawnServer, tmp_path: Path
) -> None:
    file_port = free_port()
    (tmp_path / "chatd.toml").write_text(
        f'[server]\nport = {file_port}\ndata_dir = "{tmp_path / "from-file"}"\n'
        "[chat]\nmax_sessions_per_user = 1\n"
    )
    child = spawn_server()  # runs in tmp_path with --port and --data-dir flags
    assert child.port != file_port
    assert not _listening(file_port)  # --port won over the file
    first = await Client.connect(child.port)
    assert (await first.cmd("login alice")).startswith("OK")
    second = await Client.connect(child.port)
    # ./chatd.toml was read: at most one session per user
    assert err_code(await second.cmd("login alice")) == "too-many-sessions"
    # --data-dir won over the file
    assert (tmp_path / "data").is_dir()
    assert not (tmp_path / "from-file").exists()


async def test_explicit_config_flag(spawn_server: SpawnServer, tmp_path: Path) -> None:
    conf = tmp_path / "elsewhere.toml"
    conf.write_text("[limits]\nmax_line_bytes = 32\n")
    child = spawn_server("--config", str(conf))
    c = await Client.connect(child.port)
    assert err_code(await c.cmd("login " + "a" * 40)) == "line-too-long"
    assert (await c.cmd("login alice")).startswith("OK")


async def test_admins_are_provisioned_by_the_operator(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moderation.provisioned_admins: an admin's name cannot be claimed by a login;
    `chatd admin add NAME` creates it with the operator's password (issue 13, item 10)."""
    conf = tmp_path / "chatd.toml"
    conf.write_text('[moderation]\nadmins = ["root"]\nprovisioned_admins = true\n')
    data = tmp_path / "data0"  # the first server's data directory
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-op\n"))
    args = ["--config", str(conf), "--data-dir", str(data), "admin", "add", "root"]
    assert cli.main([*args, "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert cli.main([*args[:-1], "nobody", "--password-stdin"]) == 2  # not an admin name
    server = await start_server(moderation__admins=["root"], moderation__provisioned_admins=True)
    stranger = await server.connect()
    assert err_code(await stranger.cmd("login root guess")) == "bad-password"
    root = await server.connect()
    assert (await root.cmd("login root s3cret-op")).startswith("OK welcome root")
    assert (await root.cmd("stats")).startswith("OK")  # an admin command
    # Without provisioning of its own, a configured admin name not yet created is
    # refused to whoever types it first.
    other = await start_server(moderation__admins=["boss"], moderation__provisioned_admins=True)
    claim = await other.connect()
    assert err_code(await claim.cmd("login boss pw")) == "bad-name"
