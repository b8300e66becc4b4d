"""Our own asyncio Asterisk Manager Interface client: reconnects with back-off, re-logs in,
detects dead connections by ping, correlates actions and event lists by ActionID, and hands
events to bounded, ordered subscriptions. See README.md in this package."""

from ivr_engine.telephony.ami.actions import HeaderValue, format_action
from ivr_engine.telephony.ami.backoff import Backoff
from ivr_engine.telephony.ami.client import AmiClient, AmiState
from ivr_engine.telephony.ami.connection import AmiLimits, AmiList
from ivr_engine.telephony.ami.errors import (
    AmiActionFailed,
    AmiActionTimeout,
    AmiClosed,
    AmiConnectionLost,
    AmiConnectTimeout,
    AmiError,
    AmiNotConnected,
    AmiPingTimeout,
    AmiProtocolError,
    InvalidAction,
    LoginFailed,
    SubscriptionFilterError,
    SubscriptionOverflow,
)
from ivr_engine.telephony.ami.events import (
    ChannelSnapshot,
    ChannelState,
    HangupInfo,
    Subscription,
    chan_variables,
    channel_snapshot,
    hangup_info,
    int_header,
    user_event_name,
)
from ivr_engine.telephony.ami.messages import AmiEvent, AmiMessage, AmiResponse
from ivr_engine.telephony.ami.parsing import parse_message

__all__ = [
    "AmiActionFailed",
    "AmiActionTimeout",
    "AmiClient",
    "AmiClosed",
    "AmiConnectTimeout",
    "AmiConnectionLost",
    "AmiError",
    "AmiEvent",
    "AmiLimits",
    "AmiList",
    "AmiMessage",
    "AmiNotConnected",
    "AmiPingTimeout",
    "AmiProtocolError",
    "AmiResponse",
    "AmiState",
    "Backoff",
    "ChannelSnapshot",
    "ChannelState",
    "HangupInfo",
    "HeaderValue",
    "InvalidAction",
    "LoginFailed",
    "Subscription",
    "SubscriptionFilterError",
    "SubscriptionOverflow",
    "chan_variables",
    "channel_snapshot",
    "format_action",
    "hangup_info",
    "int_header",
    "parse_message",
    "user_event_name",
]
