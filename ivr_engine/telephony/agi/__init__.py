"""A small typed AGI layer: FastAGI server, classic stdin/stdout AGI, and the wire protocol."""

from ivr_engine.telephony.agi.channel import AgiChannel, GetDataResult
from ivr_engine.telephony.agi.protocol import (
    AgiHeaderError,
    AgiProtocolError,
    AgiReply,
    AgiRequest,
    InvalidCommand,
    UsageError,
    format_command,
    parse_header_line,
    parse_reply,
    parse_request,
    quote_arg,
    reply_error,
    split_command_args,
)
from ivr_engine.telephony.agi.server import (
    AgiLimits,
    FastAgiServer,
    Handler,
    handle_agi_streams,
    read_request,
)
from ivr_engine.telephony.agi.stdio import run_stdio_agi

__all__ = [
    "AgiChannel",
    "AgiHeaderError",
    "AgiLimits",
    "AgiProtocolError",
    "AgiReply",
    "AgiRequest",
    "FastAgiServer",
    "GetDataResult",
    "Handler",
    "InvalidCommand",
    "UsageError",
    "format_command",
    "handle_agi_streams",
    "parse_header_line",
    "parse_reply",
    "parse_request",
    "quote_arg",
    "read_request",
    "reply_error",
    "run_stdio_agi",
    "split_command_args",
]
