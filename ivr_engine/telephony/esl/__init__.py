"""A small typed FreeSWITCH Event Socket (ESL) layer: the outbound-socket server that runs
calls, an inbound event source, and the wire format as pure functions.

``ivr_engine.telephony.esl.ivr_handler`` adapts it to the IVR flow (not imported here, so
the wire layer imports no flows)."""

from ivr_engine.telephony.esl.channel import EslChannel, ReadResult, read_arg
from ivr_engine.telephony.esl.connection import EslConnection, EslLimits
from ivr_engine.telephony.esl.errors import (
    EslAuthFailed,
    EslCommandError,
    EslDisconnected,
    EslError,
    EslProtocolError,
)
from ivr_engine.telephony.esl.inbound import EslApiOutput, EslEventSource
from ivr_engine.telephony.esl.outbound import (
    EslHandler,
    EslOutboundServer,
    OutboundLimits,
    serve_esl_call,
)
from ivr_engine.telephony.esl.protocol import (
    ChannelData,
    ContentType,
    EslEvent,
    EslFrame,
    EslReply,
    body_length,
    decode_channel_data,
    decode_event,
    decode_event_json,
    decode_event_plain,
    encode_command,
    parse_header_block,
    parse_header_lines,
)

__all__ = [
    "ChannelData",
    "ContentType",
    "EslApiOutput",
    "EslAuthFailed",
    "EslChannel",
    "EslCommandError",
    "EslConnection",
    "EslDisconnected",
    "EslError",
    "EslEvent",
    "EslEventSource",
    "EslFrame",
    "EslHandler",
    "EslLimits",
    "EslOutboundServer",
    "EslProtocolError",
    "EslReply",
    "OutboundLimits",
    "ReadResult",
    "body_length",
    "decode_channel_data",
    "decode_event",
    "decode_event_json",
    "decode_event_plain",
    "encode_command",
    "parse_header_block",
    "parse_header_lines",
    "read_arg",
    "serve_esl_call",
]
