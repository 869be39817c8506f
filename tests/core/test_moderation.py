"""Moderation in the core: strikes from distinct reporters (expiring), bans and their
expiry, and the admin commands, with a moved clock."""

from __future__ import annotations

from collections.abc import Sequence

from chatd.config import Config
from chatd.core.model import Session
from chatd.protocol.events import Error, Event, Notice, Ok
from chatd.protocol.replies import AnyOk
from tests.helpers.core import Harness, error_code, first

BAN = 14400.0
DAY = 86400.0


def admin_harness(**moderation: object) -> Harness:
    h = Harness(Config().with_overrides({"moderation.admins": ["root"], **moderation}))
    h.run(h.login("root"), "passwd pw")
    return h


def notices(out_pushes: list[tuple[Event, Sequence[Session]]], to: Session) -> list[Notice]:
    return [n for n, ss in out_pushes if isinstance(n, Notice) and to in ss]


# Strikes ---------------------------------------------------------------------------------


def test_warned_notice_gives_the_count_and_never_the_reporter() -> None:
    h = Harness()
    target = h.login("troll")
    out = h.run(h.login("r1"), "report troll spam")
    assert [(n.event, dict(n.fields)) for n in notices(out.pushes, target)] == [
        ("warned", {"strikes": 1, "limit": 3})
    ]


def test_strikes_expire_after_the_window() -> None:
    h = Harness()
    target = h.login("troll")
    r1, r2, r3 = h.login("r1"), h.login("r2"), h.login("r3")
    h.run(r1, "report troll")
    h.now += 12 * 3600
    h.run(r2, "report troll")
    h.now += 12 * 3600  # r1's strike is a day old now: gone
    ok = first(h.run(r3, "report troll"))
    assert isinstance(ok, Ok) and ok.fields["strikes"] == 2 and ok.fields["banned_until"] is None
    assert isinstance(first(h.run(target, "send_all still here")), Ok)
    h.now += 1
    ok = first(h.run(r1, "report troll"))  # r1 again, a fresh strike: three in the window
    assert isinstance(ok, Ok) and ok.fields["strikes"] == 3 and ok.fields["banned_until"]
    assert error_code(h.run(target, "send_all x")) == "banned"


def test_strike_window_is_configurable() -> None:
    h = Harness(Config().with_overrides({"moderation.strike_window_s": 60.0}))
    h.login("troll")
    h.run(h.login("r1"), "report troll")
    h.now += 60
    ok = first(h.run(h.login("r2"), "report troll"))
    assert isinstance(ok, Ok) and ok.fields["strikes"] == 1


def test_ban_expires_and_the_user_can_send_again() -> None:
    h = Harness()
    target = h.login("troll")
    for name in ("r1", "r2", "r3"):
        h.run(h.login(name), "report troll")
    h.now += BAN - 1
    out = h.run(target, "send troll2 hi")  # private messages too
    assert error_code(out) in ("banned", "no-such-user")
    h.login("troll2")
    banned = first(h.run(target, "send troll2 hi"))
    assert isinstance(banned, Error) and banned.code == "banned" and banned.retry_after == 1
    h.now += 1
    assert isinstance(first(h.run(target, "send troll2 hi")), Ok)
    assert isinstance(first(h.run(target, "send_all hi")), Ok)


def test_reports_during_a_ban_do_not_extend_it_but_count_later() -> None:
    h = Harness()
    target = h.login("troll")
    for name in ("r1", "r2", "r3"):
        h.run(h.login(name), "report troll")
    until = h.chat.accounts["troll"].banned_until
    h.now += 60
    h.run(h.login("r4"), "report troll")
    assert h.chat.accounts["troll"].banned_until == until
    h.now += BAN  # ban over; four strikes from the last day still stand
    assert isinstance(first(h.run(target, "send_all back")), Ok)
    ok = first(h.run(h.login("r5"), "report troll"))
    assert isinstance(ok, Ok) and ok.fields["banned_until"]  # a repeat offender: at once


def test_banned_user_can_still_report_and_read() -> None:
    h = Harness()
    target = h.login("troll")
    for name in ("r1", "r2", "r3"):
        h.run(h.login(name), "report troll")
    assert isinstance(first(h.run(target, "report r1")), Ok)
    assert isinstance(first(h.run(target, "history #general")), Ok)
    assert isinstance(first(h.run(target, "who")), Ok)


def test_a_banned_user_cannot_create_rooms_or_invite() -> None:
    h = Harness()
    target = h.login("troll")
    assert isinstance(first(h.run(target, "room create den")), Ok)  # before the ban
    h.login("victim")
    for name in ("r1", "r2", "r3"):
        h.run(h.login(name), "report troll")
    assert error_code(h.run(target, "room create lair")) == "banned"
    assert error_code(h.run(target, "room invite #den victim")) == "banned"
    assert isinstance(first(h.run(target, "room members #den")), Ok)  # reading still works


# Admins -----------------------------------------------------------------------------------


def test_admin_ban_durations_and_reason() -> None:
    h = admin_harness()
    root = h.login("root", "pw")
    target = h.login("troll")
    for arg, seconds in (("90", 90), ("90s", 90), ("30m", 1800), ("4H", BAN), ("2d", 2 * DAY)):
        out = h.run(root, f"ban troll {arg} spamming links")
        assert h.chat.accounts["troll"].banned_until == h.now + seconds, arg
        (banned,) = notices(out.pushes, target)
        assert banned.event == "banned" and banned.fields["reason"] == "spamming links"
    h.run(root, "ban troll because")  # no duration: the configured one, the rest a reason
    assert h.chat.accounts["troll"].banned_until == h.now + BAN
    assert error_code(h.run(root, "ban troll 0")) == "bad-args"
    assert error_code(h.run(root, "ban troll 99999d")) == "bad-args"
    assert error_code(h.run(root, "ban root")) == "bad-args"


def test_admin_ban_is_immediate_and_strikes_are_not_needed() -> None:
    h = admin_harness()
    root = h.login("root", "pw")
    target = h.login("troll")
    ok = first(h.run(root, "ban troll"))
    assert isinstance(ok, Ok) and ok.fields["strikes"] == 0 and ok.fields["banned_until"]
    assert error_code(h.run(target, "send_all x")) == "banned"


def test_unban_lifts_the_ban_and_clears_strikes() -> None:
    h = admin_harness()
    root = h.login("root", "pw")
    target = h.login("troll")
    for name in ("r1", "r2", "r3"):
        h.run(h.login(name), "report troll")
    out = h.run(root, "unban troll")
    assert first(out) == AnyOk("unban", "unban", {"user": "troll"})
    assert [n.event for n in notices(out.pushes, target)] == ["unbanned"]
    assert isinstance(first(h.run(target, "send_all free")), Ok)
    ok = first(h.run(h.login("r4"), "report troll"))
    assert isinstance(ok, Ok) and ok.fields["strikes"] == 1
    h2 = h.restart()  # and that is durable
    acct = h2.chat.accounts["troll"]
    assert acct.banned_until == 0 and set(acct.strikes) == {"r4"}


def test_kick_closes_every_session_with_a_notice() -> None:
    h = admin_harness()
    root = h.login("root", "pw")
    t1, t2 = h.login("troll"), h.login("troll")
    out = h.run(root, "kick troll")
    assert [(s, n.event if n else None) for s, n in out.closes] == [(t1, "kicked"), (t2, "kicked")]
    assert error_code(h.run(root, "kick ghost")) == "no-such-user"


def test_announce_reaches_everyone_online() -> None:
    h = admin_harness()
    root = h.login("root", "pw")
    others = [h.login("a"), h.login("b"), h.login("b")]
    out = h.run(root, "announce maintenance at noon")
    for s in [root, *others]:
        (n,) = notices(out.pushes, s)
        assert n.event == "announce" and n.fields == {"from": "root", "text": "maintenance at noon"}


def test_everyone_else_is_forbidden() -> None:
    h = admin_harness()
    user = h.login("user")
    plain_root = Harness(Config().with_overrides({"moderation.admins": ["root"]}))
    no_pw = plain_root.login("root")  # named admin but no password: not an admin
    for line in ("unban user", "kick user", "announce hi", "stats"):
        assert error_code(h.run(user, line)) == "forbidden", line
        assert error_code(plain_root.run(no_pw, line.replace("user", "root"))) == "forbidden"
    ok = first(h.run(user, "ban root 10m"))  # ban is a report for everyone else
    assert isinstance(ok, Ok) and ok.fields["strikes"] == 1 and ok.fields["banned_until"] is None
