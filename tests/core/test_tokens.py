"""Bearer tokens (core/tokens.py) and their rows in both stores: issued, checked,
revoked one by one or by a password change, and loaded again after a restart."""

from __future__ import annotations

from pathlib import Path

from chatd.core.model import Account
from chatd.core.outcome import DeleteToken, DeleteTokensOf
from chatd.core.tokens import TokenTable, digest, pw_tag
from chatd.store.memory import MemoryStore
from chatd.store.sqlite import SqliteStore


def test_issue_check_revoke() -> None:
    alice = Account("alice", "alice", None, 0.0)
    accounts = {"alice": alice}
    table = TokenTable()
    token, row = table.issue(alice, 5.0)
    assert row.digest == digest(token) and row.user == "alice" and token not in row.digest
    assert table.check(token, accounts) is alice
    assert table.check("forged", accounts) is None
    assert table.revoke(token) == DeleteToken(row.digest)
    assert table.check(token, accounts) is None
    assert table.revoke(token) is None


def test_a_new_password_revokes_every_token() -> None:
    alice = Account("alice", "alice", "hash-1", 0.0)
    accounts = {"alice": alice}
    table = TokenTable()
    one, _ = table.issue(alice, 1.0)
    two, _ = table.issue(alice, 2.0)
    alice.pw_hash = "hash-2"
    assert table.check(one, accounts) is None and table.check(two, accounts) is None
    three, row = table.issue(alice, 3.0)
    assert row.pw_tag == pw_tag("hash-2") and table.check(three, accounts) is alice
    assert pw_tag(None) == ""


def test_both_stores_keep_tokens(tmp_path: Path) -> None:
    alice = Account("alice", "alice", None, 0.0)
    for store in (MemoryStore(), SqliteStore(tmp_path)):
        table = TokenTable(store.load_tokens())
        assert len(table) == 0
        keep, put1 = table.issue(alice, 1.0)
        gone, put2 = table.issue(alice, 2.0)
        bob_token, put3 = table.issue(Account("bob", "bob", None, 0.0), 3.0)
        store.commit([put1, put2, put3])
        dropped = table.revoke(gone)
        assert dropped is not None
        store.commit([dropped])
        again = TokenTable(store.load_tokens())
        assert len(again) == 2
        assert again.check(keep, {"alice": alice}) is alice
        assert again.check(gone, {"alice": alice}) is None
        store.commit([DeleteTokensOf("alice")])
        assert [r.user for r in store.load_tokens()] == ["bob"]
        assert bob_token
        store.close()
