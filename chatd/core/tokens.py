"""Bearer tokens of the HTTP door: issue, check, revoke. Pure, like the rest of core/.

A token is 32 random bytes (URL-safe base64); only its sha256 is kept, in memory and in
the store, so a copy of the database does not hand out sessions. A token is bound to
the password it was issued under (`pw_tag`, a short hash of the stored password hash):
setting or changing the password revokes every token of that user at once, without a
scan, and `passwd` also deletes their rows (`DeleteTokensOf`). `DELETE /session` revokes
one token. Tokens do not expire by age; an account's tokens go with a password change.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from chatd.core.accounts import AccountCommands
from chatd.core.model import Account, Session
from chatd.core.outcome import DeleteToken, Outcome, PutToken
from chatd.core.snapshot import TokenRow
from chatd.protocol.commands import Login


def digest(token: str) -> str:
    """What is stored for a token: its sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def pw_tag(pw_hash: str | None) -> str:
    """A short fingerprint of the account's password hash ("" for no password)."""
    if pw_hash is None:
        return ""
    return hashlib.sha256(pw_hash.encode()).hexdigest()[:16]


class TokenTable:
    """The live tokens, by digest. Built from the store's rows at start-up."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[TokenRow] = ()) -> None:
        self._rows: dict[str, TokenRow] = {row.digest: row for row in rows}

    def __len__(self) -> int:
        return len(self._rows)

    def issue(self, acct: Account, now: float) -> tuple[str, PutToken]:
        """A new token for `acct`, and the change that stores it."""
        token = secrets.token_urlsafe(32)
        row = PutToken(digest(token), acct.key, now, pw_tag(acct.pw_hash))
        self._rows[row.digest] = row
        return token, row

    def check(self, token: str, accounts: dict[str, Account]) -> Account | None:
        """The account a token stands for, or None when it is unknown, revoked, or was
        issued under a password the account no longer has."""
        row = self._rows.get(digest(token))
        if row is None:
            return None
        acct = accounts.get(row.user)
        if acct is None or pw_tag(acct.pw_hash) != row.pw_tag:
            return None
        return acct

    def revoke(self, token: str) -> DeleteToken | None:
        """Forgets one token; the change that deletes its row, None if it was unknown."""
        row = self._rows.pop(digest(token), None)
        return None if row is None else DeleteToken(row.digest)


def attach(chat: AccountCommands, s: Session, acct: Account, now: float) -> Outcome:
    """Logs session `s` in as `acct` for a valid token, as `login` does once the
    password is checked: the same session limit, replay and notices. Raises Refused
    (too-many-sessions) like `login`."""
    chat._check_sessions(acct)
    return chat._attach(s, acct, Login(acct.name, None, verb="login"), now)
