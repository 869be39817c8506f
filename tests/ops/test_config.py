"""Config loading: defaults, overrides, and one clear error naming the bad key."""

from pathlib import Path

import pytest

from chatd.config import Config, ConfigError, load

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_the_shipped_file_equals_the_defaults_but_opens_every_door() -> None:
    # The built-in defaults keep the extra doors off (HTTP.md); the shipped file opens
    # them on their usual local ports, and differs in nothing else.
    shipped = load(ROOT / "chatd.toml")
    assert (shipped.telnet.port, shipped.http.port, shipped.irc.port) == (2323, 8080, 6667)
    doors = {"telnet.port": 2323, "http.port": 8080, "irc.port": 6667}
    assert shipped == Config().with_overrides(doors)
    assert (Config().telnet.port, Config().http.port, Config().irc.port) == (0, 0, 0)


def test_defaults_from_the_contract() -> None:
    c = Config()
    assert (c.server.host, c.server.port) == ("127.0.0.1", 8000)
    assert c.chat.history_on_join == 20 and c.chat.max_sessions_per_user == 8
    assert c.limits.max_line_bytes == 4096 and c.limits.general_messages_per_window == 20
    assert c.moderation.strikes_to_ban == 3 and c.moderation.ban_duration_s == 14400
    assert c.retention.delivered_ttl_s == 3600 and c.retention.max_age_s == 604800
    assert c.files.max_bytes == 5 * 1024 * 1024 and c.rooms.link_ttl_s == 86400


def test_values_and_int_durations(tmp_path: Path) -> None:
    c = load(write(tmp_path, '[limits]\ngeneral_window_s = 60\n[moderation]\nadmins = ["root"]\n'))
    assert c.limits.general_window_s == 60.0 and c.moderation.admins == ("root",)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nprot = 1\n", "server.prot"),
        ("[nope]\nx = 1\n", "[nope]"),
        ('[server]\nport = "80"\n', "server.port"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[limits]\nmax_line_bytes = 0\n", "limits.max_line_bytes"),
        ("[limits]\nlogin_timeout_s = -1\n", "limits.login_timeout_s"),
        ("[auth]\nrequire_password = 1\n", "auth.require_password"),
        ('[log]\nlevel = "loud"\n', "log.level"),
        ("[moderation]\nadmins = [1]\n", "moderation.admins"),
        ('[server]\ntimezone = "Mars/Base"\n', "server.timezone"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text))
    assert key in str(e.value) and "\n" not in str(e.value)


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[server\n"))


def test_overrides_are_validated() -> None:
    assert Config().with_overrides({"server.port": 9000}).server.port == 9000
    with pytest.raises(ConfigError, match=r"server\.port"):
        Config().with_overrides({"server.port": -5})


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"cluster.port": 7000}, 'cluster.port needs store.backend = "postgres"'),
        (
            {
                "store.backend": "postgres",
                "store.dsn": "postgresql://db/chatd",
                "cluster.port": 7000,
                "cluster.host": "10.0.0.1",
            },
            "cluster.secret must be set",
        ),
        ({"cluster.node_id": "two words"}, "cluster.node_id must be"),
        ({"store.backend": "postgres"}, "store.dsn must be set"),
    ],
)
def test_store_and_cluster_settings_that_depend_on_each_other(
    overrides: dict[str, object], why: str
) -> None:
    with pytest.raises(ConfigError, match=why):
        Config().with_overrides(overrides)


def test_a_cluster_port_on_loopback_or_with_a_secret_is_fine() -> None:
    pg = {"store.backend": "postgres", "store.dsn": "postgresql://db/chatd", "cluster.port": 7000}
    assert Config().with_overrides(pg).cluster.port == 7000
    far = {**pg, "cluster.host": "10.0.0.1", "cluster.secret": "x"}
    assert Config().with_overrides(far).cluster.host == "10.0.0.1"
