"""The static fallback menu for FreeSWITCH (extension ``ivr-fail``), generated from a menu.

The FreeSWITCH twin of ``fallback_dialplan`` (Asterisk's ``[ivr-fail]``): the extensions
that play the menu with FreeSWITCH alone when the engine is unreachable or failed
(``ivr-outcome-other`` in dialplans/freeswitch/ivr-engine.xml transfers such calls to
``ivr-fail``). The same menu facts: the engine's default order and prompt pieces, digits,
intents, targets, ``attempts``, ``input_timeout_ms``, ``fallback_intent``; a chosen key
sets ``IVR_INTENT``, ``IVR_TARGET`` and ``IVR_OUTCOME=routed`` and goes to
``ivr-outcome-routed``, the normal path's routing (its overflow handles a callback).

The output is a file for an include pre-process directive inside the ``ivr-engine``
context: an ``<include>`` of ``<extension>``s, as FreeSWITCH's own ``dialplan/default/*.xml``.
mod_dialplan_xml evaluates conditions when it hunts (at a ``transfer``), not while the
actions run, so each step that depends on a key ``read`` transfers to an extension named
after the key (``ivr-fail-key-6``; ``ivr-fail-key-`` for none).

Pure: text in, text out. Every value comes from a validated menu and is checked again
(``check_safe``: no space, quote, ``$``, ``!``, ``,`` or ``<``) and XML-escaped; the menu file's
path goes only into comments and must not end one or hold what FreeSWITCH's pre-processor
acts on even inside comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ivr_engine.domain.models import Menu, MenuOption
from ivr_engine.fallback_dialplan import (
    GeneratedFallback,
    body_digest,
    check_safe,
    context_name,
    engine_variables,
    find_marked,
)
from ivr_engine.flows import variables
from ivr_engine.personalize import menu_prompt_sequence, static_menu

MARKER = "<!-- ivr-engine-fallback:"
END_MARKER = "<!-- end of ivr-engine-fallback"
CONTEXT = "ivr-engine"  # the sample's context (dialplans/freeswitch/ivr-engine.xml)
KEY_VARIABLE = "IVR_FAIL_KEY"
TRIES_VARIABLE = "IVR_FAIL_TRIES"  # a tally: one "1" per try, so a regex can count them
SCRIPT_VARIABLE = "IVR_SCRIPT"  # the sample's engine script choice (telephony/esl/outbound.py)
_MARKER_LINE = re.compile(
    r"^<!-- ivr-engine-fallback: pbx=freeswitch menu=(?P<menu>\S+) extension=(?P<context>\S+) "
    r"source=(?P<source>.+) sha256=(?P<sha>[0-9a-f]{64}) -->$"
)
# What ends or breaks an XML comment, and what FreeSWITCH's pre-processor acts on in any
# line, comments included (it expands $${...}, runs <!--#... and drops lines naming its
# directive).
_NOT_IN_COMMENTS = ("--", "$${", "x-pre-process", "<!--#", "\n", "\r")


def render_fallback_xml(menu: Menu, source: str) -> str:
    """The whole generated file: header comment, marker, body, end marker."""
    name = context_name(menu.name)
    bad = [part for part in _NOT_IN_COMMENTS if part in source.lower()]
    if bad or source.endswith("-"):
        raise ValueError(
            f"menu {menu.name}: its file name {source!r} cannot be written into an XML "
            f"comment (it holds {bad or ['a final -']}): rename the file or its directory"
        )
    body = render_body_xml(menu, name)
    header = [
        "<!--",
        f"  GENERATED from {source} by `ivr-engine dialplan fallback`",
        f"  (options: pbx freeswitch, menu {menu.name}, output this file).",
        "  Do not edit: edit the menu, run the command again and `reloadxml`.",
        "  `ivr-engine check-config` (its dialplan option naming ivr-engine.xml) says when",
        f"  {source} has changed since. Included in the ivr-engine context of ivr-engine.xml.",
        "-->",
        f"{MARKER} pbx=freeswitch menu={menu.name} extension={name} source={source} "
        f"sha256={body_digest(body)} -->",
    ]
    return "\n".join(header) + "\n" + body + f"{END_MARKER} menu={menu.name} -->\n"


def render_body_xml(menu: Menu, name: str) -> str:
    check_safe(menu, name)
    lines = ["<include>", *_entry(menu, name)]
    for option in menu.options:
        lines += _choice(option, name)
    lines += _retries(menu, name)
    lines.append("</include>")
    return "\n".join(lines) + "\n"


def find_generated_xml(text: str) -> list[GeneratedFallback]:
    """Every generated FreeSWITCH fallback in a dialplan file's text."""
    return find_marked(text, _MARKER_LINE, END_MARKER + " menu={menu} -->", "freeswitch")


def attr(value: str) -> str:
    """``value`` inside a double-quoted XML attribute."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _action(application: str, data: str = "", tag: str = "action") -> str:
    arg = f' data="{attr(data)}"' if data else ""
    return f'      <{tag} application="{attr(application)}"{arg}/>'


def _destination(expression: str, close: bool = False) -> str:
    end = "/>" if close else ">"
    return f'    <condition field="destination_number" expression="{attr(expression)}"{end}'


def _entry(menu: Menu, name: str) -> Iterator[str]:
    cleared = [v for v in engine_variables() if v != variables.DECISION] + [SCRIPT_VARIABLE]
    yield f"  <!-- The static menu {menu.name}: its default order and digits, played by"
    yield "       FreeSWITCH alone when the engine is unreachable or failed. -->"
    yield f'  <extension name="{name}">'
    yield _destination(f"^{name}$")
    yield "      <!-- No caller ID in the data: `event` splits it on commas and takes any"
    yield "           Event-Subclass= in it. The application adds the channel's own data"
    yield "           (Caller-Caller-ID-Number, Unique-ID, ...), which the bridge reads. -->"
    yield _action(
        "event",
        "Event-Name=CUSTOM,Event-Subclass=ivr_engine::fallback,Outcome=${IVR_OUTCOME}",
    )
    yield "      <!-- Nothing an engine that failed part-way (or an earlier pass) left may"
    yield "           route the call: every IVR_* the engine sets is cleared. The welcome"
    yield "           and the first announcement are the first try (as in the engine). -->"
    yield from (_action("unset", variable) for variable in cleared)
    yield _action("set", f"{variables.DECISION}=dialplan-fallback")
    yield _action("set", f"{TRIES_VARIABLE}=1")
    yield _action("answer")
    yield from _read(menu, name, (menu.prompts.welcome,))
    yield "    </condition>"
    yield "  </extension>"


def _read(menu: Menu, name: str, lead: tuple[str, ...], tag: str = "action") -> Iterator[str]:
    """One try: ``lead``, every option (a key interrupts), a wait; then to the key's step."""
    pieces = (*lead, *menu_prompt_sequence(static_menu(menu, ""), menu.prompts, greeting=False))
    files = "!".join(f"{piece}.wav" for piece in pieces)
    timeout = max(menu.input_timeout_ms, 1)
    yield _action("unset", KEY_VARIABLE, tag)
    yield _action("read", f"1 1 file_string://{files} {KEY_VARIABLE} {timeout} #", tag)
    yield _action("transfer", f"{name}-key-${{{KEY_VARIABLE}}} XML {CONTEXT}", tag)


def _choice(option: MenuOption, name: str) -> Iterator[str]:
    chosen = (
        f"{variables.INTENT}={option.intent} {variables.TARGET}={option.target} "
        f"{variables.OUTCOME}=routed"
    )
    yield f'  <extension name="{name}-key-{option.digit}">'
    yield _destination(f"^{name}-key-{option.digit}$")
    yield _action("multiset", chosen)
    yield _action("transfer", f"ivr-outcome-routed XML {CONTEXT}")
    yield "    </condition>"
    yield "  </extension>"


def _retries(menu: Menu, name: str) -> Iterator[str]:
    """No key (``{name}-key-``) or a key no option has (one character): after ``attempts``
    tries the ``fallback_intent``'s key, with no lead-in (as the engine); else the lead-in
    and the menu again without the welcome."""
    fallback = menu.option(menu.fallback_intent)
    assert fallback is not None  # menu validation guarantees it
    yield f"  <!-- No key or a wrong one: again, at most {menu.attempts} tries in all, then"
    yield f"       {menu.fallback_intent} (fallback_intent). -->"
    for step, expression, lead_in in (
        ("no-input", f"^{name}-key-$", menu.prompts.no_input),
        ("invalid", f"^{name}-key-.$", menu.prompts.invalid),
    ):
        yield f'  <extension name="{name}-{step}">'
        yield _destination(expression, close=True)
        tries = f"^1{{{menu.attempts},}}$"
        yield f'    <condition field="${{{TRIES_VARIABLE}}}" expression="{attr(tries)}">'
        yield _action("transfer", f"{name}-key-{fallback.digit} XML {CONTEXT}")
        yield _action("set", f"{TRIES_VARIABLE}=${{{TRIES_VARIABLE}}}1", "anti-action")
        yield from _read(menu, name, (lead_in,), "anti-action")
        yield "    </condition>"
        yield "  </extension>"
