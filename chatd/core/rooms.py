"""Private rooms: room create/invite/link/unlink/approve/deny/leave/kick/members, rooms,
join (issue 5).

A room's key (`#` + lower-cased name) is its chat key and its hub topic: the topic holds
the online sessions of its members, so a message to the room is one broadcast. Every
change here keeps three views in step: `Room.members`, `Account.rooms` (which drives
unread replay and the topics a login subscribes) and `topics[room.key]`.

Decisions (docs/conversations.md): an owner who leaves hands the room to the member who
joined longest ago; the last member to leave deletes the room with its messages, links,
requests and invitations, so a later room of the same name starts empty. With
`rooms.invite_consent` an invite is a pending offer (`Room.invites`, indexed by invitee
in `invitations`) that the invitee accepts or declines.
"""

from __future__ import annotations

import secrets

from chatd.core.model import Account, Invitation, Room, Session
from chatd.core.names import RESERVED_ROOMS, key, valid_name
from chatd.core.outcome import (
    DeleteInvite,
    DeleteJoinRequest,
    DeleteLinks,
    DeleteMember,
    DeleteMessages,
    DeleteRoom,
    Outcome,
    PutInvite,
    PutJoinRequest,
    PutLink,
    PutMember,
    PutRoom,
)
from chatd.core.snapshot import Snapshot
from chatd.core.state import ChatState, Refused, account_of, log, reply
from chatd.protocol import commands as c
from chatd.protocol import notices as n
from chatd.protocol import replies as r
from chatd.protocol.events import Code, Message, Notice, Push
from chatd.protocol.timefmt import rfc3339

_LINK_BYTES = 18  # 144 random bits: unguessable, and 24 characters to paste


class RoomCommands(ChatState):
    def load_rooms(self, snapshot: Snapshot) -> None:
        """Rebuilds rooms, members, links and join requests from the store."""
        for row in snapshot.rooms:
            self.rooms[row.key] = Room(row.key, row.name, row.owner, row.created)
            self.topics.setdefault(row.key, set())
        for m in snapshot.members:
            room = self.rooms.get(m.room)
            acct = self.accounts.get(m.user)
            if room is not None and acct is not None:
                room.members[acct.key] = m.since
                acct.add_room(room.key)
        for link in snapshot.links:
            room = self.rooms.get(link.room)
            if room is not None:
                room.links[link.token] = link.expires
                self.link_rooms[link.token] = room.key
        for req in snapshot.requests:
            room = self.rooms.get(req.room)
            if room is not None and req.user in self.accounts:
                room.requests[req.user] = req.ts
        for inv in snapshot.invites:
            room = self.rooms.get(inv.room)
            if room is not None and inv.user in self.accounts:
                room.invites[inv.user] = Invitation(inv.by, inv.ts, inv.expires)
                self.invitations.setdefault(inv.user, set()).add(room.key)

    # Commands ----------------------------------------------------------------------

    def cmd_room(self, s: Session, cmd: c.Room, now: float) -> Outcome:
        """room create|invite|link|unlink|approve|deny|accept|decline|leave|kick|members
        <#room> [user]: one verb for every room action; each is a method below."""
        acct = account_of(s)
        match cmd.action:
            case "create":
                self._check_not_banned(acct, now)  # a banned user makes nothing new
                return self._room_create(s, acct, cmd, now)
            case "invite":
                self._check_not_banned(acct, now)
                return self._room_invite(s, acct, cmd, now)
            case "link":
                return self._room_link(acct, cmd, now)
            case "unlink":
                return self._room_unlink(acct, cmd)
            case "approve" | "deny":
                return self._room_answer(s, acct, cmd, now)
            case "accept":
                return self._room_accept(s, acct, cmd, now)
            case "decline":
                return self._room_decline(acct, cmd, now)
            case "leave":
                return self._room_leave(s, acct, cmd)
            case "kick":
                return self._room_kick(s, acct, cmd, now)
            case "members":
                room = self._member_room(acct, cmd.room)
                return reply(r.RoomOk(cmd.verb, room.key, members=self._member_names(room)))
        raise Refused(Code.BAD_ARGS, f"usage: {c.COMMANDS['room'].usage}")  # pragma: no cover

    def cmd_rooms(self, s: Session, cmd: c.Rooms, now: float) -> Outcome:
        """rooms: the rooms you belong to, with their owner and member count, then the
        invitations waiting for your answer (`invites`, left out while there are none)."""
        acct = account_of(s)
        rows = []
        for rk in sorted(acct.rooms):
            room = self.rooms[rk]
            owner = self.accounts.get(room.owner)
            rows.append(r.RoomRow(room.key, owner.name if owner else room.owner, len(room.members)))
        invites = tuple(
            r.InvitationRow(room.key, self._name_of(inv.by), inv.expires)
            for room, inv in self._invitations_of(acct, now)
        )
        return reply(r.RoomsOk(cmd.verb, tuple(rows), invites or None))

    def cmd_join(self, s: Session, cmd: c.Join, now: float) -> Outcome:
        """join <link>: asks the owner to let you in; they answer with room approve|deny."""
        acct = account_of(s)
        token = cmd.link.rsplit("/", 1)[-1]  # tolerate a link pasted with a prefix
        room = self.rooms.get(self.link_rooms.get(token, ""))
        if room is None or room.links.get(token, 0.0) <= now:
            raise Refused(Code.NO_SUCH_CHAT, "that join link is unknown, revoked or expired")
        if acct.key in room.members:
            raise Refused(Code.BAD_ARGS, f"you are already a member of {room.key}")
        out = reply(r.JoinOk(cmd.verb, room.key, "pending"))
        if acct.key not in room.requests:
            cap = self.config.limits.max_join_requests_per_room
            if cap and len(room.requests) >= cap:
                raise Refused(
                    Code.TOO_LARGE,
                    f"{room.key} has {len(room.requests)} pending join requests, the most a "
                    "room may have; try again when its owner has answered some",
                )
            self._limit(acct.key, "join", now)
            room.requests[acct.key] = now
            out.changes.append(PutJoinRequest(room.key, acct.key, now))
            owner = self.accounts.get(room.owner)
            if owner is not None:
                out.notify(owner.sessions, self._request_notice(room, acct))
            log.info("room.join_requested", room=room.key, user=acct.name)
        return out

    # The room actions --------------------------------------------------------------

    def _room_create(self, s: Session, acct: Account, cmd: c.Room, now: float) -> Outcome:
        """The creator owns the room and is its first member."""
        name = cmd.room.removeprefix("#")
        if not valid_name(name) or key(name) in RESERVED_ROOMS:
            raise Refused(
                Code.BAD_NAME,
                "room names are 1-32 characters of A-Z a-z 0-9 _ . - and not general",
            )
        rk = "#" + key(name)
        if rk in self.rooms:
            raise Refused(Code.BAD_NAME, f"{rk} is taken; pick another name")
        self._check_room_bounds(acct)
        self._limit(acct.key, "room-create", now)
        room = Room(rk, name, acct.key, now)
        self.rooms[rk] = room
        self.topics[rk] = set()
        out = reply(r.RoomOk(cmd.verb, rk))
        out.changes.append(PutRoom(rk, name, acct.key, now))
        joined = n.Joined(rk, acct.name)
        self._admit(room, acct, now, out, notice=joined, actor=s)
        log.info("room.created", room=rk, owner=acct.name)
        return out

    def _room_invite(self, s: Session, acct: Account, cmd: c.Room, now: float) -> Outcome:
        """The owner adds a member directly; inviting a member again changes nothing.
        With rooms.invite_consent the invite is an offer instead (`_offer`)."""
        room = self._owned_room(acct, cmd.room, "invite")
        target = self._user(self._arg(cmd))
        if self.config.rooms.invite_consent:
            return self._offer(s, cmd, room, target, now)
        out = reply(r.RoomOk(cmd.verb, room.key, target.name))
        if target.key not in room.members:
            self._limit(acct.key, "invite", now)
            invited = n.Invited(room.key, acct.name)
            self._admit(room, target, now, out, notice=invited, actor=s)
            log.info("room.invited", room=room.key, user=target.name, by=acct.name)
        return out

    def _offer(self, s: Session, cmd: c.Room, room: Room, target: Account, now: float) -> Outcome:
        """A pending invitation: the invitee is told (`invitation`, and at each login
        while it waits) and answers with room accept|decline before it expires. Someone
        who already asked to join has consented: they are added at once."""
        acct = account_of(s)
        if target.key in room.members:
            raise Refused(Code.BAD_ARGS, f"{target.name} is already a member of {room.key}")
        pending = room.invites.get(target.key)
        if pending is not None and pending.expires > now:
            raise Refused(
                Code.BAD_ARGS,
                f"{target.name} is already invited to {room.key} "
                f"(until {rfc3339(pending.expires)})",
            )
        if target.key in room.requests:
            self._limit(acct.key, "invite", now)
            out = reply(r.RoomOk(cmd.verb, room.key, target.name, status="added"))
            self._admit(room, target, now, out, notice=n.Joined(room.key, target.name), actor=s)
            log.info("room.invited", room=room.key, user=target.name, by=acct.name)
            return out
        self._check_invite_bounds(room, target, now)
        self._limit(acct.key, "invite", now)
        expires = now + self.config.rooms.invite_ttl_s
        out = reply(r.RoomOk(cmd.verb, room.key, target.name, expires=expires, status="invited"))
        for user, old in list(room.invites.items()):
            if old.expires <= now:
                self._drop_invite(room, user, out)
        room.invites[target.key] = Invitation(acct.key, now, expires)
        self.invitations.setdefault(target.key, set()).add(room.key)
        out.changes.append(PutInvite(room.key, target.key, acct.key, now, expires))
        out.notify(target.sessions, n.Invitation(room.key, acct.name, expires))
        log.info("room.invitation", room=room.key, user=target.name, by=acct.name)
        return out

    def _room_accept(self, s: Session, acct: Account, cmd: c.Room, now: float) -> Outcome:
        """The invitee takes up a pending invitation: a member now, told and replayed
        to as on approval (this session too), and the members see `joined`."""
        room = self._invited_room(acct, cmd.room, now)
        out = Outcome()
        joined = n.Joined(room.key, acct.name)  # `_admit` drops the invitation
        self._admit(room, acct, now, out, notice=joined, actor=s, replay_actor=True)
        out.replies.append(r.RoomOk(cmd.verb, room.key, members=self._member_names(room)))
        log.info("room.invite_accepted", room=room.key, user=acct.name)
        return out

    def _room_decline(self, acct: Account, cmd: c.Room, now: float) -> Outcome:
        """The invitee turns a pending invitation down; the room's owner is told."""
        room = self._invited_room(acct, cmd.room, now)
        out = reply(r.RoomOk(cmd.verb, room.key))
        self._drop_invite(room, acct.key, out)
        owner = self.accounts.get(room.owner)
        if owner is not None:
            out.notify(owner.sessions, n.Declined(room.key, acct.name))
        log.info("room.invite_declined", room=room.key, user=acct.name)
        return out

    def _room_link(self, acct: Account, cmd: c.Room, now: float) -> Outcome:
        """A new join link; the room's expired links are dropped on the way."""
        room = self._owned_room(acct, cmd.room, "make join links for")
        live = sum(1 for until in room.links.values() if until > now)
        cap = self.config.limits.max_links_per_room
        if cap and live >= cap:
            raise Refused(
                Code.TOO_LARGE,
                f"{room.key} has {live} live join links, the most a room may have; "
                f"room unlink {room.key} or wait for one to expire",
            )
        self._limit(acct.key, "link", now)
        token = secrets.token_urlsafe(_LINK_BYTES)
        expires = now + self.config.rooms.link_ttl_s
        out = reply(r.RoomOk(cmd.verb, room.key, link=token, expires=expires))
        for old, until in list(room.links.items()):
            if until <= now:
                self._drop_link(room, old)
                out.changes.append(DeleteLinks(room.key, old))
        room.links[token] = expires
        self.link_rooms[token] = room.key
        out.changes.append(PutLink(token, room.key, expires))
        log.info("room.link_created", room=room.key, expires=rfc3339(expires))
        return out

    def _room_unlink(self, acct: Account, cmd: c.Room) -> Outcome:
        """Revokes every join link of the room; pending requests stay."""
        room = self._owned_room(acct, cmd.room, "revoke join links of")
        for token in list(room.links):
            self._drop_link(room, token)
        out = reply(r.RoomOk(cmd.verb, room.key))
        out.changes.append(DeleteLinks(room.key))
        log.info("room.links_revoked", room=room.key)
        return out

    def _room_answer(self, s: Session, acct: Account, cmd: c.Room, now: float) -> Outcome:
        """approve|deny: answers a pending join request and tells the requester."""
        room = self._owned_room(acct, cmd.room, f"{cmd.action} requests for")
        target = self._user(self._arg(cmd))
        if target.key not in room.requests:
            raise Refused(Code.BAD_ARGS, f"{target.name} has not asked to join {room.key}")
        del room.requests[target.key]
        out = reply(r.RoomOk(cmd.verb, room.key, target.name))
        out.changes.append(DeleteJoinRequest(room.key, target.key))
        if cmd.action == "approve":
            joined = n.Joined(room.key, target.name)
            self._admit(room, target, now, out, notice=joined, actor=s)
        else:
            out.notify(target.sessions, n.Denied(room.key))
        event = "room.approved" if cmd.action == "approve" else "room.denied"
        log.info(event, room=room.key, user=target.name, by=acct.name)
        return out

    def _room_leave(self, s: Session, acct: Account, cmd: c.Room) -> Outcome:
        """A member leaves; an owner hands over the room, the last member deletes it."""
        room = self._member_room(acct, cmd.room)
        out = Outcome()
        self._remove(room, acct, out, actor=s, notice=None)
        out.replies.append(r.RoomOk(cmd.verb, room.key, members=self._member_names(room)))
        log.info("room.left", room=room.key, user=acct.name)
        return out

    def _room_kick(self, s: Session, acct: Account, cmd: c.Room, now: float) -> Outcome:
        """The owner removes a member, who gets a `removed` notice, or withdraws a
        pending invitation (the invitee gets `uninvited`), as Matrix's kick does."""
        room = self._owned_room(acct, cmd.room, "kick from")
        target = self._user(self._arg(cmd))
        if target is acct:
            raise Refused(Code.BAD_ARGS, f"you own {room.key}; use room leave {room.key}")
        if target.key not in room.members and target.key in room.invites:
            out = Outcome()
            live = room.invites[target.key].expires > now
            self._drop_invite(room, target.key, out)
            if live:
                out.notify(target.sessions, n.Uninvited(room.key, acct.name))
            members = self._member_names(room)
            out.replies.append(r.RoomOk(cmd.verb, room.key, target.name, members))
            log.info("room.invite_withdrawn", room=room.key, user=target.name, by=acct.name)
            return out
        if target.key not in room.members:
            raise Refused(Code.NOT_A_MEMBER, f"{target.name} is not a member of {room.key}")
        out = Outcome()
        removed = n.Removed(room.key, acct.name)
        self._remove(room, target, out, actor=s, notice=removed)
        members = self._member_names(room)
        out.replies.append(r.RoomOk(cmd.verb, room.key, target.name, members))
        log.info("room.kicked", room=room.key, user=target.name, by=acct.name)
        return out

    # Membership --------------------------------------------------------------------

    def _admit(
        self,
        room: Room,
        acct: Account,
        now: float,
        out: Outcome,
        *,
        notice: Notice | None,
        actor: Session,
        replay_actor: bool = False,
    ) -> None:
        """Makes `acct` a member: tells them (`notice`) and the others (`joined`), then
        replays the room's latest messages to them, as a login would (to the acting
        session too with `replay_actor`: an invitee's `room accept`)."""
        others = self._sessions_of(room, but=actor)
        room.members[acct.key] = now
        acct.add_room(room.key)
        self.topics.setdefault(room.key, set()).update(acct.sessions)
        out.changes.append(PutMember(room.key, acct.key, now))
        if room.requests.pop(acct.key, None) is not None:
            out.changes.append(DeleteJoinRequest(room.key, acct.key))
        self._drop_invite(room, acct.key, out)
        out.notify(others, n.Joined(room.key, acct.name))
        mine = tuple(x for x in acct.sessions if x is not actor)
        if notice is not None:
            out.notify(mine, notice)
        readers = tuple(acct.sessions) if replay_actor else mine
        recent = self.index.last(room.key, self.config.chat.history_on_join)
        if readers and recent:

            def then(msgs: list[Message]) -> Outcome:
                return Outcome(pushes=[(Push(m, acct.key, True), readers) for m in msgs])

            out.extend(self.with_bodies(recent, then))

    def _remove(
        self, room: Room, acct: Account, out: Outcome, *, actor: Session, notice: Notice | None
    ) -> None:
        """Ends a membership; hands over or deletes the room when that was the owner or
        the last member."""
        del room.members[acct.key]
        acct.drop_room(room.key)
        self.topics.get(room.key, set()).difference_update(acct.sessions)
        out.changes.append(DeleteMember(room.key, acct.key))
        mine = tuple(x for x in acct.sessions if x is not actor)
        left = n.Left(room.key, acct.name)
        out.notify(mine, notice or left)
        if not room.members:
            self._delete_room(room, out)
            return
        out.notify(self._sessions_of(room, but=actor), left)
        if room.owner == acct.key:
            self._hand_over(room, out)

    def _hand_over(self, room: Room, out: Outcome) -> None:
        """The member who joined longest ago becomes the owner, and sees the pending
        join requests that are now theirs to answer."""
        heir_key = min(room.members, key=lambda k: (room.members[k], k))
        heir = self.accounts[heir_key]
        room.owner = heir.key
        out.changes.append(PutRoom(room.key, room.name, heir.key, room.created))
        out.notify(
            self._sessions_of(room, but=None),
            n.Owner(room.key, heir.name),
        )
        for user in sorted(room.requests, key=lambda u: (room.requests[u], u)):
            requester = self.accounts.get(user)
            if requester is not None:
                out.notify(heir.sessions, self._request_notice(room, requester))
        log.info("room.owner_changed", room=room.key, owner=heir.name)

    def _delete_room(self, room: Room, out: Outcome) -> None:
        """An empty room goes entirely: links, requests and its messages too."""
        for token in list(room.links):
            self._drop_link(room, token)
        out.changes.append(DeleteLinks(room.key))
        for user in room.requests:
            out.changes.append(DeleteJoinRequest(room.key, user))
        room.requests.clear()
        for user in list(room.invites):
            self._drop_invite(room, user, out)
        ids = tuple(self.index.drop_chat(room.key))
        self.recent.remove(ids)
        if ids:
            out.changes.append(DeleteMessages(ids))
            self.files.forget(ids, out)
        self.topics.pop(room.key, None)
        del self.rooms[room.key]
        out.changes.append(DeleteRoom(room.key))
        log.info("room.deleted", room=room.key, messages=len(ids))

    # Helpers -----------------------------------------------------------------------

    def _check_room_bounds(self, acct: Account) -> None:
        """Rooms one user owns and rooms on the server are bounded (limits.max_rooms_*)."""
        lim = self.config.limits
        owned = sum(1 for rk in acct.rooms if self.rooms[rk].owner == acct.key)
        if lim.max_rooms_per_user and owned >= lim.max_rooms_per_user:
            raise Refused(
                Code.TOO_LARGE,
                f"you own {owned} rooms, the most one user may; leave one to create another",
            )
        if lim.max_rooms and len(self.rooms) >= lim.max_rooms:
            raise Refused(Code.TOO_LARGE, f"the server has {len(self.rooms)} rooms, its limit")

    def _check_invite_bounds(self, room: Room, target: Account, now: float) -> None:
        """Pending invitations of a room and to one user are bounded
        (rooms.max_invites_per_*); expired ones do not count."""
        cfg = self.config.rooms
        live = sum(1 for inv in room.invites.values() if inv.expires > now)
        if cfg.max_invites_per_room and live >= cfg.max_invites_per_room:
            raise Refused(
                Code.TOO_LARGE,
                f"{room.key} has {live} pending invitations, the most a room may have; "
                "try again when some are answered or expire (room kick withdraws one)",
            )
        waiting = len(self._invitations_of(target, now))
        if cfg.max_invites_per_user and waiting >= cfg.max_invites_per_user:
            raise Refused(
                Code.TOO_LARGE,
                f"{target.name} has {waiting} pending invitations, the most one user may "
                "have; try again when they have answered some",
            )

    def _invitations_of(self, acct: Account, now: float) -> list[tuple[Room, Invitation]]:
        """The live invitations waiting for `acct`, oldest first."""
        found = []
        for rk in self.invitations.get(acct.key, ()):
            room = self.rooms.get(rk)
            inv = room.invites.get(acct.key) if room is not None else None
            if room is not None and inv is not None and inv.expires > now:
                found.append((room, inv))
        found.sort(key=lambda pair: (pair[1].ts, pair[0].key))
        return found

    def _invited_room(self, acct: Account, name: str, now: float) -> Room:
        """A room with a live invitation for `acct` (accept, decline)."""
        room = self._room(name)
        inv = room.invites.get(acct.key)
        if inv is None or inv.expires <= now:
            why = "it expired" if inv is not None else "ask its owner"
            raise Refused(Code.BAD_ARGS, f"you have no pending invitation to {room.key} ({why})")
        return room

    def _drop_invite(self, room: Room, user: str, out: Outcome) -> None:
        if room.invites.pop(user, None) is None:
            return
        out.changes.append(DeleteInvite(room.key, user))
        rooms = self.invitations.get(user)
        if rooms is not None:
            rooms.discard(room.key)
            if not rooms:
                del self.invitations[user]

    def _name_of(self, user: str) -> str:
        acct = self.accounts.get(user)
        return acct.name if acct is not None else user

    def _login_notices(self, acct: Account) -> list[Notice]:
        """An owner sees the join requests still waiting for them at every login, and
        an invitee the invitations waiting for their answer."""
        notices = super()._login_notices(acct)
        for rk in sorted(acct.rooms):
            room = self.rooms[rk]
            if room.owner != acct.key:
                continue
            for user in sorted(room.requests, key=lambda u: (room.requests[u], u)):
                requester = self.accounts.get(user)
                if requester is not None:
                    notices.append(self._request_notice(room, requester))
        if acct.key in self.invitations:
            now = acct.last_seen  # the login's time (the core has no clock here)
            for room, inv in self._invitations_of(acct, now):
                notices.append(n.Invitation(room.key, self._name_of(inv.by), inv.expires))
        return notices

    def _request_notice(self, room: Room, requester: Account) -> Notice:
        return n.JoinRequest(room.key, requester.name)

    def _owned_room(self, acct: Account, name: str, what: str) -> Room:
        room = self._room(name)
        if room.owner != acct.key:
            raise Refused(Code.FORBIDDEN, f"only the owner of {room.key} can {what} it")
        return room

    def _arg(self, cmd: c.Room) -> str:
        if cmd.user is None:  # pragma: no cover - the parser checks the arity
            raise Refused(Code.BAD_ARGS, f"usage: {c.COMMANDS['room'].usage}")
        return cmd.user

    def _member_names(self, room: Room) -> tuple[str, ...]:
        """Members in the order they joined (the owner usually first)."""
        names = []
        for k in sorted(room.members, key=lambda k: (room.members[k], k)):
            acct = self.accounts.get(k)
            names.append(acct.name if acct else k)
        return tuple(names)

    def _sessions_of(self, room: Room, *, but: Session | None) -> list[Session]:
        """Every online session of the room's members, except the acting one."""
        return [x for x in self.topics.get(room.key, ()) if x is not but]

    def _drop_link(self, room: Room, token: str) -> None:
        room.links.pop(token, None)
        self.link_rooms.pop(token, None)
