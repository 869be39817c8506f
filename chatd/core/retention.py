"""Message lifetime: the sweep that deletes delivered and expired messages.

Rules (docs/limits.md "Retention"):
- a message delivered to all its recipients is deleted `retention.delivered_ttl_s`
  after it was first seen delivered to all of them;
- any message is deleted `retention.max_age_s` after it was sent, delivered or not.

Recipients: a private chat's two parties; a room's members; for `#general`, every
account except those offline and not seen for `retention.general_recipient_idle_s`
(otherwise one user who never comes back would pin every message for max_age_s).
A user has received message m when `Account.received() >= m.id`, so within one chat
"delivered to all" is a prefix: every message up to the lowest cursor of its recipients
(the chat's *frontier*). The sweep does not know the instant of the last delivery; it
notes, per chat, the sweep time at which each frontier was first seen (a *mark*). A
message thus counts as delivered up to one `sweep_interval_s` late, and lives at most
that much longer than `delivered_ttl_s`: never shorter.

Every deletion is a prefix of a chat's id-ordered list, so it is a slice, and the sweep
does its work in slices of at most SWEEP_CHATS_PER_TICK chats and SWEEP_DELETES_PER_TICK
messages per tick, asking to be called again at once (`sweep_wakeup() == now`) while a
pass is unfinished, so the event loop serves connections in between.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable

from chatd.core.model import Account
from chatd.core.outcome import DeleteMessages, Outcome
from chatd.core.parts import Mark
from chatd.core.state import ChatState, log
from chatd.protocol.events import GENERAL

SWEEP_CHATS_PER_TICK = 2000
SWEEP_DELETES_PER_TICK = 2000


def note_frontier(marks: list[Mark], frontier: int, now: float) -> None:
    """Records that every message with id <= `frontier` is delivered to all at `now`.

    Marks stay increasing in both id and time. A frontier that moved back (a new room
    member, an idle user who came back) drops the marks beyond it; the prefix it still
    covers has been delivered since the earliest dropped mark, so that time is kept.
    """
    if marks and marks[-1][0] > frontier:
        since = now
        while marks and marks[-1][0] > frontier:
            since = marks.pop()[1]
        if not marks or marks[-1][0] < frontier:
            marks.append((frontier, since))
    elif not marks or marks[-1][0] < frontier:
        marks.append((frontier, now))


def due_frontier(marks: list[Mark], now: float, ttl: float) -> int:
    """The highest id delivered to all at least `ttl` ago (0: none)."""
    due = 0
    for frontier, since in marks:
        if since + ttl > now:
            break
        due = frontier
    return due


class Retention(ChatState):
    def derive_last_seen(self) -> None:
        """Start-up: when each user was last online, as a lower bound from what is
        stored (not persisted itself), and how many stored messages each sent
        (`Account.sent`): account creation, the newest message they sent,
        and the newest message of their chats at or below their cursor (they were
        online to receive it). From the message index, so that loading keeps no list of
        every message. Errs towards "idle"; the cost is that a user who was online for a
        while without receiving or sending anything may stop holding `#general`
        messages up to that much earlier."""
        accounts = self.accounts
        for acct in accounts.values():
            acct.last_seen = max(acct.last_seen, acct.created)
        chats = self.index.chats
        sent: Counter[str] = Counter()
        for chat_log in chats.values():
            sent.update(chat_log.senders)
            latest: dict[str, float] = {}
            for sender, ts in zip(chat_log.senders, chat_log.times, strict=True):
                if ts > latest.get(sender, 0.0):
                    latest[sender] = ts
            for sender, ts in latest.items():
                author = accounts.get(sender)
                if author is not None and ts > author.last_seen:
                    author.last_seen = ts
        for sender, n in sent.items():  # how active each was, for complaints
            author = accounts.get(sender)
            if author is not None:
                author.sent = n
        for acct in accounts.values():
            for chat in self.chats_of(acct):
                found = chats.get(chat)
                if found is None:
                    continue
                i = bisect.bisect_right(found.ids, acct.cursor)
                if i and found.times[i - 1] > acct.last_seen:
                    acct.last_seen = found.times[i - 1]

    # The sweep ------------------------------------------------------------------------

    def sweep(self, now: float, out: Outcome) -> None:
        """Deletes what retention says is due at `now`, in small batches."""
        state = self.retention
        if not state.chats_left:
            if now < state.at:
                return
            self._start_pass(now)
        # Should this tick fail half-way, the next try comes an interval later, not at
        # once in a loop; a pass left unfinished resumes then.
        state.at = now + self.config.retention.sweep_interval_s
        budget = SWEEP_DELETES_PER_TICK
        deleted: list[int] = []
        for _ in range(SWEEP_CHATS_PER_TICK):
            if not state.chats_left or budget <= 0:
                break
            chat = state.chats_left.pop()
            n = self._sweep_chat(chat, now, budget, deleted)
            budget -= n
            if budget <= 0:
                state.chats_left.append(chat)  # it may have more: visit it again next tick
        if deleted:
            self._forget(deleted, out)
        if state.chats_left:
            state.at = now  # more to do: again at once, after the loop served others

    def sweep_wakeup(self) -> float | None:
        """When the next sweep is due (`now` of the last tick while a pass is unfinished)."""
        return self.retention.at

    def _start_pass(self, now: float) -> None:
        for acct in self.online.values():
            acct.last_seen = now
        state = self.retention
        state.general_frontier = self._frontier_general(now)
        chats = self.index.chats
        state.chats_left = list(chats)
        for chat in [c for c in state.marks if c not in chats]:
            del state.marks[chat]

    def _sweep_chat(self, chat: str, now: float, budget: int, deleted: list[int]) -> int:
        """Notes the chat's frontier and deletes its due prefix (at most `budget`)."""
        msgs = self.index.chats.get(chat)
        if not msgs:
            return 0
        ret = self.config.retention
        marks = self.retention.marks.setdefault(chat, [])
        frontier = int(min(self._frontier(chat), msgs.last_id))
        note_frontier(marks, frontier, now)
        due = due_frontier(marks, now, ret.delivered_ttl_s)
        too_old = now - ret.max_age_s
        n = 0
        ids, times = msgs.ids, msgs.times
        limit = min(budget, len(ids))
        while n < limit and (ids[n] <= due or times[n] <= too_old):
            n += 1
        if n:
            gone = self.index.drop_prefix(chat, n)
            self.recent.remove(gone)
            deleted.extend(gone)
            first = ids[0] if ids else math.inf
            while marks and marks[0][0] < first:
                marks.pop(0)
        if not marks:
            del self.retention.marks[chat]
        return n

    def _forget(self, ids: list[int], out: Outcome) -> None:
        out.changes.append(DeleteMessages(tuple(ids)))
        self.files.forget(ids, out)
        log.info("retention.deleted", messages=len(ids), first=ids[0], last=ids[-1])

    # Who must have received a chat's messages -------------------------------------------

    def _frontier(self, chat: str) -> int | float:
        """The lowest `received()` over the chat's recipients (inf: nobody left)."""
        if chat == GENERAL:
            return self.retention.general_frontier
        if chat.startswith("@"):
            parties = (self.accounts.get(k) for k in chat[1:].split("|"))
            return _lowest(a for a in parties if a is not None)
        room = self.rooms.get(chat)
        if room is None:
            return math.inf  # a deleted room: nobody can read its messages any more
        members = (self.accounts.get(k) for k in room.members)
        return _lowest(a for a in members if a is not None)

    def _frontier_general(self, now: float) -> int | float:
        """`#general`'s recipients: everyone online, and everyone offline who was seen
        within `general_recipient_idle_s`."""
        idle_since = now - self.config.retention.general_recipient_idle_s
        online = self.online
        return _lowest(
            a for a in self.accounts.values() if a.key in online or a.last_seen > idle_since
        )


def _lowest(accounts: Iterable[Account]) -> int | float:
    """The lowest `received()` of these accounts (inf for none)."""
    best: int | float = math.inf
    for a in accounts:
        r = a.received()
        if r < best:
            best = r
    return best
