"""The core's rules, by plain calls with a moved clock."""

from dataclasses import replace

from chatd.config import Config
from chatd.protocol.events import GENERAL, Mode, Notice, Ok, Push
from chatd.protocol.replies import AnyOk
from tests.helpers.core import Core, Harness, error_code, first, messages


def sessions_of(out_pushes: list[tuple[object, tuple[object, ...]]]) -> list[object]:
    return [s for _, ss in out_pushes for s in ss]


def test_first_login_creates_the_account_case_insensitively() -> None:
    h = Harness()
    out = h.run(h.session(), "login Alice")
    ok = first(out)
    assert isinstance(ok, Ok) and ok.fields == {"user": "Alice", "new": True, "unread": 0}
    ok2 = first(h.run(h.session(), "login ALICE"))
    assert isinstance(ok2, Ok) and ok2.fields["user"] == "Alice" and not ok2.fields["new"]


def test_bad_names() -> None:
    h = Harness()
    for name in ("x" * 33, "bad/name", "é", "a,b"):
        assert error_code(h.run(h.session(), f"login {name}")) in ("bad-name", "bad-args")


def test_commands_before_login() -> None:
    h = Harness()
    s = h.session()
    assert error_code(h.run(s, "send_all hi")) == "not-logged-in"
    assert isinstance(first(h.run(s, "status")), Ok)
    assert isinstance(first(h.run(s, "ping")), Ok)
    h.run(s, "login a")
    assert error_code(h.run(s, "login b")) == "already-logged-in"


def test_password_flow() -> None:
    h = Harness()
    h.login("alice", "pw1")
    assert error_code(h.run(h.session(), "login alice")) == "bad-password"
    assert error_code(h.run(h.session(), "login alice nope")) == "bad-password"
    s = h.login("alice", "pw1")
    assert error_code(h.run(s, "passwd pw2")) == "bad-password"  # old one needed
    assert error_code(h.run(s, "passwd pw2 wrong")) == "bad-password"
    assert isinstance(first(h.run(s, "passwd pw2 pw1")), Ok)
    h2 = h.restart()
    assert error_code(h2.run(h2.session(), "login alice pw1")) == "bad-password"
    assert isinstance(first(h2.run(h2.session(), "login alice pw2")), Ok)


def test_require_password() -> None:
    h = Harness(replace(Config(), auth=replace(Config().auth, require_password=True)))
    assert error_code(h.run(h.session(), "login bob")) == "bad-password"
    assert isinstance(first(h.run(h.session(), "login bob pw")), Ok)


def test_send_all_broadcasts_to_general_except_the_sender() -> None:
    h = Harness()
    a = h.login("alice")
    out = h.run(a, "send_all hello")
    ok = first(out)
    assert isinstance(ok, Ok) and ok.fields["id"] == 1 and ok.fields["ts"].endswith("Z")
    assert [(m.text, s) for m, s in out.broadcasts] == [("hello", a)]
    assert out.acked == 1
    assert a in h.chat.topics[GENERAL]


def test_private_message_goes_to_recipient_and_senders_other_sessions() -> None:
    h = Harness()
    a1, a2 = h.login("alice"), h.login("alice")
    b = h.login("bob")
    out = h.run(a1, "send @bob psst")
    assert isinstance(first(out), Ok)
    viewers = {(p.viewer, tuple(ss)) for p, ss in out.pushes if isinstance(p, Push)}
    assert viewers == {("bob", (b,)), ("alice", (a2,))}
    assert error_code(h.run(a1, "send carol hi")) == "no-such-user"
    assert error_code(h.run(a1, "send #nowhere hi")) == "no-such-chat"


def test_new_user_gets_recent_general_history_as_replay() -> None:
    h = Harness()
    a = h.login("alice")
    for i in range(20):
        h.run(a, f"send_all m{i}")
    out = h.run(h.session(), "login bob")
    ok = first(out)
    assert isinstance(ok, Ok) and ok.fields["unread"] == 20
    pushes = [p for p in out.replies if isinstance(p, Push)]
    assert [p.message.text for p in pushes] == [f"m{i}" for i in range(20)]
    assert all(p.replay for p in pushes)


def test_returning_user_gets_what_they_missed_and_not_what_they_received() -> None:
    h = Harness()
    b = h.login("bob")
    a = h.login("alice")
    h.run(a, "send_all one")
    b.sent_id = 1  # the hub wrote message 1 to bob's socket
    h.chat.close(b, h.now)
    h.run(a, "send_all two")
    h.run(a, "send bob three")
    out = h.run(h.session(), "login bob")
    ok = first(out)
    assert isinstance(ok, Ok) and ok.fields == {"user": "bob", "new": False, "unread": 2}
    texts = [p.message.text for p in out.replies if isinstance(p, Push)]
    assert texts == ["two", "three"]


def test_read_position_survives_restart() -> None:
    h = Harness()
    b = h.login("bob")
    a = h.login("alice")
    h.run(a, "send_all one")
    b.sent_id = 1
    h.store.commit(h.chat.save_cursors())
    h2 = h.restart()
    a2 = h2.login("alice")
    h2.run(a2, "send_all two")
    ok = first(h2.run(h2.session(), "login bob"))
    assert isinstance(ok, Ok) and ok.fields["unread"] == 1


def test_session_limit() -> None:
    h = Harness(replace(Config(), chat=replace(Config().chat, max_sessions_per_user=2)))
    h.login("a")
    h.login("a")
    assert error_code(h.run(h.session(), "login a")) == "too-many-sessions"


def test_three_distinct_reporters_ban_for_the_duration() -> None:
    h = Harness()
    target = h.login("troll")
    reporters = [h.login(n) for n in ("r1", "r2", "r3")]
    out = h.run(reporters[0], "report troll spam")
    assert first(out) == AnyOk(
        "ban", "report", {"user": "troll", "strikes": 1, "banned_until": None}
    )
    warned = [n for n, ss in out.pushes if isinstance(n, Notice) and target in ss]
    assert warned and warned[0].event == "warned"
    h.run(reporters[0], "ban troll again")  # same reporter: no new strike
    assert len(h.chat.accounts["troll"].strikes) == 1
    h.run(reporters[1], "ban troll")
    out = h.run(reporters[2], "ban troll")
    ok = first(out)
    assert isinstance(ok, Ok) and ok.fields["strikes"] == 3 and ok.fields["banned_until"]
    events = [n.event for n, _ in out.pushes if isinstance(n, Notice)]
    assert events == ["warned", "banned"]
    banned = h.run(target, "send_all hi")
    assert error_code(banned) == "banned"
    assert first(banned).retry_after == 14400  # type: ignore[union-attr]
    assert isinstance(first(h.run(target, "history #general")), Ok)  # can still read
    h.now += 14401
    assert isinstance(first(h.run(target, "send_all back")), Ok)


def test_no_self_report_and_no_unknown_target() -> None:
    h = Harness()
    a = h.login("a")
    assert error_code(h.run(a, "report a")) == "bad-args"
    assert error_code(h.run(a, "report ghost")) == "no-such-user"


def test_ban_survives_restart() -> None:
    h = Harness()
    h.login("troll")
    for n in ("r1", "r2", "r3"):
        h.run(h.login(n), "report troll")
    h2 = h.restart()
    assert error_code(h2.run(h2.login("troll"), "send_all hi")) == "banned"


def test_general_rate_limit_fixed_window() -> None:
    h = Harness()
    a = h.login("a")
    h.login("b")
    for _ in range(20):
        assert isinstance(first(h.run(a, "send_all x")), Ok)
    out = h.run(a, "send_all x")
    assert error_code(out) == "rate-limited"
    assert first(out).retry_after == 3600  # type: ignore[union-attr]
    assert isinstance(first(h.run(a, "send b x")), Ok)  # private chats are not limited
    h.now += 3600
    assert isinstance(first(h.run(a, "send_all x")), Ok)


def test_history_pages_backwards_oldest_first() -> None:
    h = Harness()
    a = h.login("a")
    for i in range(1, 31):
        h.run(a, f"send_all m{i}")
    ok = first(h.run(a, "history #general 5 before 11"))
    assert isinstance(ok, Ok)
    assert [p.message.id for p in ok.fields["messages"]] == [6, 7, 8, 9, 10]
    ok = first(h.run(a, "history general"))
    assert isinstance(ok, Ok) and len(ok.fields["messages"]) == 20
    assert error_code(h.run(a, "history @ghost")) == "no-such-user"


def test_who_and_status() -> None:
    h = Harness()
    a = h.login("alice")
    h.login("alice")
    h.login("bob")
    ok = first(h.run(a, "who"))
    assert isinstance(ok, Ok)
    assert ok.fields["users"] == [{"name": "alice", "sessions": 2}, {"name": "bob", "sessions": 1}]
    st = first(h.run(a, "status"))
    assert isinstance(st, Ok)
    assert st.fields["server"]["online"] == 2 and st.fields["sessions"] == 2
    assert st.fields["chats"][0]["chat"] == GENERAL


def test_mode_switch_takes_effect_for_its_own_reply() -> None:
    h = Harness()
    s = h.session()
    h.run(s, "mode json")
    assert s.mode is Mode.JSON


def test_admin_commands_need_a_configured_admin_with_password() -> None:
    cfg = replace(Config(), moderation=replace(Config().moderation, admins=("root",)))
    h = Harness(cfg)
    plain = h.login("root")  # no password: not an admin
    assert error_code(h.run(plain, "stats")) == "forbidden"
    h.run(plain, "passwd pw")
    admin = h.login("root", "pw")
    target = h.login("troll")
    ok = first(h.run(admin, "ban troll 10m flooding"))
    assert isinstance(ok, Ok) and ok.fields["banned_until"]
    assert error_code(h.run(target, "send_all x")) == "banned"
    h.run(admin, "unban troll")
    assert isinstance(first(h.run(target, "send_all x")), Ok)
    out = h.run(admin, "kick troll")
    assert [s for s, _ in out.closes] == [target]
    assert isinstance(first(h.run(admin, "stats")), Ok)


def test_quit_closes_the_session() -> None:
    h = Harness()
    s = h.login("a")
    out = h.run(s, "quit")
    assert out.closes == [(s, None)]


def test_login_after_an_id_replays_what_came_after_it_whatever_was_received() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    ids = [core.ok(bob, f"send_all m{i}")["id"] for i in range(4)]
    alice.sent_id = ids[-1]  # alice's session got them all
    core.run(alice, "quit")
    again = core.session()
    out = core.run(again, f"login alice after {ids[1]}")
    assert core.ok(core.session(), f"login alice after {ids[2]}")["unread"] == 1
    assert isinstance(login := first(out), Ok) and login.fields["unread"] == 2
    assert [m.text for m in messages(out.replies)] == ["m2", "m3"]
    plain = core.session()
    assert core.ok(plain, "login alice")["unread"] == 0
