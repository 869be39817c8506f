"""Comments and threads: comment, thread (issue 5).

A comment is an ordinary message of the original's chat with `reply_to` set, so it is
delivered, replayed, paged by history and expired like any other. Threads are one level
deep: a comment on a comment points at the root, so `thread` is the root plus the
messages of that chat that reply to it. Only someone who can see a message may comment
on it or read its thread; to anyone else it does not exist (`no-such-message`).
"""

from __future__ import annotations

from chatd.core.model import Session
from chatd.core.outcome import Outcome, PutMessage
from chatd.core.snapshot import MessageRow
from chatd.core.state import ChatState, Refused, account_of, log, reply
from chatd.protocol import commands as c
from chatd.protocol import replies as r
from chatd.protocol.events import Code, Message, Push


class ThreadCommands(ChatState):
    def cmd_comment(self, s: Session, cmd: c.Comment, now: float) -> Outcome:
        """comment <id> <text>: a comment on a message you can see, posted to its chat
        under the same rules as a send there (ban, #general rate limit)."""
        acct = account_of(s)
        original = self._visible_message(acct, cmd.message_id)
        root = self._root_of(original)
        self._check_not_banned(acct, now)
        chat = original.chat
        to: str | None = None
        self._chat_limit(acct, chat, now)
        if chat.startswith("@"):
            a, _, b = chat[1:].partition("|")
            other_key = b if a == acct.key else a
            other = self.accounts.get(other_key)
            to = other.name if other is not None else other_key
        msg = self._post(
            chat, acct.name, cmd.text, now, to=to, reply_to=root.id, tags=cmd.tags, kind=cmd.kind
        )
        out = reply(r.CommentOk(cmd.verb, msg.id, msg.ts, root.id))
        out.changes.append(PutMessage(msg))
        out.acked = msg.id
        if to is None:
            out.broadcasts.append((msg, s))
        else:
            for party in {a for a in (self.accounts.get(k) for k in chat[1:].split("|")) if a}:
                sessions = tuple(x for x in party.sessions if x is not s)
                if sessions:
                    out.pushes.append((Push(msg, party.key), sessions))
        log.info("message.sent", user=acct.name, chat=chat, id=msg.id, reply_to=root.id)
        return out

    def cmd_thread(self, s: Session, cmd: c.Thread, now: float) -> Outcome:
        """thread <id>: a message and its comments, oldest first; for a comment, the
        thread it belongs to."""
        acct = account_of(s)
        root = self._root_of(self._visible_message(acct, cmd.message_id))
        ids = [root.id, *self.index.comments.get(root.id, ())]

        def then(msgs: list[Message]) -> Outcome:
            if not msgs or msgs[0].id != root.id:  # deleted while it was being read
                raise Refused(Code.NO_SUCH_MESSAGE, f"no message {cmd.message_id}")
            comments = tuple(Push(m, acct.key) for m in msgs[1:])
            return reply(r.ThreadOk(cmd.verb, Push(msgs[0], acct.key), comments))

        return self.with_bodies(ids, then)

    def _root_of(self, m: MessageRow) -> MessageRow:
        """The message a comment belongs under; a comment whose root has expired
        stands as a root itself."""
        if m.reply_to is None:
            return m
        root = self.index.row(m.reply_to)
        return root if root is not None and root.chat == m.chat else m
