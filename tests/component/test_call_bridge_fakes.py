"""A call-level fake Asterisk for the call-bridge tests, and tests of the fake itself.

``Switch`` is pure: it keeps the live channels and a virtual clock and writes, for each call
step, the AMI events Asterisk 22 sends (channel blocks as in ``test_ami_fake_peer``; every
event carries ``Timestamp`` as with manager.conf ``timestampevents = yes``, so durations
are exact and a whole run is reproducible). ``FakeAsterisk`` sends those events to every
session logged in to a ``FakeAmi`` (events sent while nobody is connected are lost, as with
Asterisk) and answers ``CoreShowChannels`` with the switch's live channels. ``restart()``
is Asterisk going down and up (every call dies); ``blip()`` drops the AMI connections only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from ivr_engine.telephony.ami import AmiEvent
from tests.component.test_ami_fake_peer import Action, FakeAmi, Pairs, PeerSession, encode

T0 = 1_764_000_000.0


@dataclass
class Channel:
    uniqueid: str
    linkedid: str
    name: str
    caller: str
    context: str
    exten: str
    created: float
    state: int = 4  # Ring
    bridge: str | None = None


_STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}


class Switch:
    """Live channels, a clock, and the AMI events of each call step (see module doc)."""

    def __init__(self, t0: float = T0, prefix: str = "") -> None:
        self.t = t0
        self.prefix = prefix  # keeps uniqueids apart between switches of one test
        self.channels: dict[str, Channel] = {}
        self.pending: list[Pairs] = []
        self._ids = itertools.count(1)
        self._bridges = itertools.count(1)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def take(self) -> list[Pairs]:
        out, self.pending = self.pending, []
        return out

    def take_events(self) -> list[AmiEvent]:
        return [AmiEvent(tuple(pairs)) for pairs in self.take()]

    def _event(self, name: str, *pairs: tuple[str, str]) -> None:
        head = [("Event", name), ("Privilege", "call,all"), ("Timestamp", f"{self.t:.6f}")]
        self.pending.append([*head, *pairs])

    @staticmethod
    def block(ch: Channel, prefix: str = "") -> list[tuple[str, str]]:
        values = [
            ("Channel", ch.name),
            ("ChannelState", str(ch.state)),
            ("ChannelStateDesc", _STATE_DESC.get(ch.state, "Unknown")),
            ("CallerIDNum", ch.caller),
            ("CallerIDName", "SIPp Caller"),
            ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", ch.context),
            ("Exten", ch.exten),
            ("Priority", "1"),
            ("Uniqueid", ch.uniqueid),
            ("Linkedid", ch.linkedid),
        ]
        return [(prefix + key, value) for key, value in values]

    def _new_channel(
        self, name: str, caller: str, context: str, exten: str, linked: str
    ) -> Channel:
        uniqueid = f"{int(self.t)}.{self.prefix}{next(self._ids)}"
        ch = Channel(
            uniqueid, linked or uniqueid, f"{name}-{uniqueid}", caller, context, exten, self.t
        )
        self.channels[uniqueid] = ch
        return ch

    # --- call steps ---------------------------------------------------------------------

    def inbound(self, caller: str, exten: str = "1000", context: str = "from-trunk") -> Channel:
        ch = self._new_channel("PJSIP/sipp-caller", caller, context, exten, "")
        self._event("Newchannel", *self.block(ch))
        return ch

    def answer(self, ch: Channel, context: str = "ivr-entry") -> None:
        ch.state, ch.context, ch.exten = 6, context, "s"
        self._event("Newstate", *self.block(ch))

    def user_event(self, ch: Channel, name: str, **headers: str) -> None:
        self._event("UserEvent", *self.block(ch), ("UserEvent", name), *headers.items())

    def fallback(self, ch: Channel) -> None:
        ch.context = "ivr-fail"
        self.user_event(ch, "IvrFallback", AgiStatus="FAILURE", Outcome="", Caller=ch.caller)

    def routed(self, ch: Channel, intent: str, target: str, agent: str = "") -> None:
        ch.context = "ivr-route"
        self.user_event(
            ch, "IvrRouted", Intent=intent, Target=target, Customer="", Decision="static",
            Outcome="routed", AgiStatus="SUCCESS", Agent=agent,
        )  # fmt: skip

    def dial(self, ch: Channel, endpoint: str = "agent-1", agent: str | None = None) -> Channel:
        """Ring an agent: ``IvrAgentDial`` first when ``agent`` is given (the IVR's dial)."""
        if agent is not None:
            self.user_event(ch, "IvrAgentDial", Agent=agent, Customer="", Intent="billing")
        leg = self._new_channel(f"PJSIP/{endpoint}", endpoint, "from-agents", "s", ch.linkedid)
        leg.state = 0
        self._event("Newchannel", *self.block(leg))
        self._event(
            "DialBegin", *self.block(ch), *self.block(leg, "Dest"), ("DialString", endpoint)
        )
        return leg

    def dial_end(self, ch: Channel, leg: Channel, status: str = "ANSWER") -> None:
        if status == "ANSWER":
            leg.state = 6
        self._event("DialEnd", *self.block(ch), *self.block(leg, "Dest"), ("DialStatus", status))
        if status != "ANSWER":
            self.hangup(leg, 19, "No answer")

    def bridge(self, *channels: Channel) -> str:
        bridge = f"bridge-{self.prefix}{next(self._bridges)}"
        for n, ch in enumerate(channels, start=1):
            ch.bridge = bridge
            self._event(
                "BridgeEnter", ("BridgeUniqueid", bridge), ("BridgeType", "basic"),
                ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"),
                ("BridgeName", "<unknown>"), ("BridgeNumChannels", str(n)),
                ("BridgeVideoSourceMode", "none"), *self.block(ch),
            )  # fmt: skip
        return bridge

    def hold(self, ch: Channel) -> None:
        self._event("Hold", *self.block(ch), ("MusicClass", "default"))

    def unhold(self, ch: Channel) -> None:
        self._event("Unhold", *self.block(ch))

    def hangup(self, ch: Channel, cause: int = 16, cause_txt: str = "Normal Clearing") -> None:
        if ch.bridge is not None:
            bridge, ch.bridge = ch.bridge, None
            self._event("BridgeLeave", ("BridgeUniqueid", bridge), *self.block(ch))
        self.channels.pop(ch.uniqueid, None)
        self._event("Hangup", *self.block(ch), ("Cause", str(cause)), ("Cause-txt", cause_txt))

    def agent_call(self, caller: str, *, talk_s: float = 30.0, hold_s: float = 0.0) -> Channel:
        """A whole call: IVR routes to an agent who answers, talks (holds), hangs up."""
        ch = self.inbound(caller)
        self.advance(0.5)
        self.answer(ch)
        self.advance(8.0)
        self.routed(ch, "billing", "queue:billing", agent="a-1")
        leg = self.dial(ch, agent="a-1")
        self.advance(4.0)
        self.dial_end(ch, leg)
        self.bridge(leg, ch)
        if hold_s:
            self.advance(talk_s / 2)
            self.hold(leg)
            self.advance(hold_s)
            self.unhold(leg)
            self.advance(talk_s / 2)
        else:
            self.advance(talk_s)
        self.hangup(leg)
        self.hangup(ch)
        return ch

    # --- CoreShowChannels ---------------------------------------------------------------

    def core_show_channels(self, action_id: str) -> Iterator[Pairs]:
        for ch in self.channels.values():
            seconds = int(self.t - ch.created)
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            yield [
                ("Event", "CoreShowChannel"),
                ("ActionID", action_id),
                *self.block(ch),
                ("Application", "AGI"),
                ("ApplicationData", "agi://127.0.0.1:4573/ivr"),
                ("Duration", duration),
                ("BridgeId", ch.bridge or ""),
            ]


class FakeAsterisk:
    """Sends a ``Switch``'s events to the sessions logged in to ``peer`` (see module doc)."""

    def __init__(self, peer: FakeAmi, switch: Switch | None = None) -> None:
        self.peer = peer
        self.switch = switch or Switch()
        self.delivered: list[Pairs] = []
        self.lost: list[Pairs] = []
        peer.handlers["coreshowchannels"] = self._core_show_channels

    def live_sessions(self) -> list[PeerSession]:
        return [s for s in self.peer.sessions if s.logged_in and not s.closed.is_set()]

    async def flush(self) -> None:
        """Send what the switch wrote since the last flush."""
        for pairs in self.switch.take():
            sent = False
            for session in self.live_sessions():
                try:
                    await session.send(encode(pairs))
                    sent = True
                except ConnectionError:
                    pass
            (self.delivered if sent else self.lost).append(pairs)

    async def restart(self) -> None:
        """Asterisk stops (every call dies, no Hangup is sent) and starts again."""
        await self.peer.stop()
        self.switch.channels.clear()
        self.switch.take()
        await self.peer.start()

    def blip(self) -> None:
        """The AMI connections drop; Asterisk and its calls go on."""
        for session in self.peer.sessions:
            session.drop()

    async def _core_show_channels(self, session: PeerSession, action: Action) -> None:
        await self.flush()  # events before the list, as Asterisk orders them
        aid = action.action_id
        await session.respond(
            action, "Success", ("EventList", "start"), ("Message", "Channels will follow")
        )
        rows = list(self.switch.core_show_channels(aid))
        for row in rows:
            await session.send_pairs(row)
        await session.send_pairs(
            [("Event", "CoreShowChannelsComplete"), ("ActionID", aid), ("EventList", "Complete"),
             ("ListItems", str(len(rows)))]
        )  # fmt: skip


# --- tests of the fake itself --------------------------------------------------------------


def test_switch_writes_a_whole_agent_call_in_asterisk_order() -> None:
    switch = Switch()
    ch = switch.agent_call("+15551230001", talk_s=10, hold_s=2)
    names = [e.name for e in switch.take_events()]
    assert names == [
        "Newchannel", "Newstate", "UserEvent", "UserEvent", "Newchannel", "DialBegin",
        "DialEnd", "BridgeEnter", "BridgeEnter", "Hold", "Unhold", "BridgeLeave", "Hangup",
        "BridgeLeave", "Hangup",
    ]  # fmt: skip
    assert ch.uniqueid == ch.linkedid and not switch.channels


def test_core_show_channels_lists_live_channels_with_their_duration() -> None:
    switch = Switch()
    ch = switch.inbound("+15551230001")
    switch.advance(3725)
    (row,) = switch.core_show_channels("a1")
    listed = AmiEvent(tuple(row))
    assert listed.get("Uniqueid") == ch.uniqueid and listed.get("Duration") == "01:02:05"
