"""A speech menu through the real Asterisk 22: the caller (SIPp) says what they are calling
about after the menu; Asterisk records it (``RECORD FILE``) into a directory the engine
reads, the engine recognises it (pocketsphinx) and routes.

The speech is flite's ``rms`` voice (the prompts are ``slt``) sent as G.711 RTP. SIPp's
scenario is fixed in advance, so the test times the speech from the prompt files' lengths:
Asterisk records from the end of the menu's prompts plus ``key_wait_ms``, and a recording
ends after ``silence_s`` of silence counted from its start, so the speech starts ~1 s into a
3 s window.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import wave
from pathlib import Path

import pytest
from ami import AmiClient
from conftest import Testbed
from engine_harness import REPO, engine_settings, running_engine, store_of, wait_for_call_event
from sipp import run_sipp_call, speech_pcap

MENU = """
menu: main
input_timeout_ms: 3000
attempts: 2
fallback_intent: operator
shortcut: {enabled: false}
speech: {enabled: true, key_wait_ms: 500, listen_ms: 6000, silence_s: 3}
options:
  - intent: billing
    digit: "1"
    label: Billing
    prompt: ivr-engine/label-billing
    target: queue:billing
    phrases: [bill, my bill, pay my bill, payment]
  - intent: operator
    digit: "0"
    label: Operator
    prompt: ivr-engine/label-operator
    pinned: true
    target: queue:general
    phrases: [agent, an agent, operator]
"""
#: Answer waits for media (~0.7 s, test_engine_calls), then the AGI session starts.
ANSWER_S = 0.9


def seconds(path: Path) -> float:
    if path.suffix == ".gsm":  # 33-byte frames of 20 ms
        return path.stat().st_size / 33 * 0.02
    with wave.open(str(path)) as audio:
        return audio.getnframes() / audio.getframerate()


def prompt_seconds(asterisk: Testbed, prompts: list[str]) -> float:
    # sounds/en is a symlink through /etc/alternatives inside the chroot: find the digits
    [sounds] = {
        p.parent.parent for p in asterisk.chroot.glob("usr/share/asterisk/sounds/*/digits/1.gsm")
    }
    total = 0.0
    for prompt in prompts:
        own = REPO / "prompts/en" / f"{prompt}.wav"
        total += seconds(own if own.exists() else next(sounds.glob(f"{prompt}.*")))
    return total


def rms_voice(text: str, directory: Path) -> bytes:
    raw, wav = directory / "raw.wav", directory / "said.wav"
    subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(raw)], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(wav)], check=True)
    return wav.read_bytes()


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite (scripts/setup.sh)")
async def test_a_caller_who_says_pay_my_bill_is_routed_to_billing(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551250001"
    menus = tmp_path / "menus"
    menus.mkdir()
    (menus / "main.yaml").write_text(MENU)
    inside = f"/var/spool/asterisk/ivr-speech-{secrets.token_hex(4)}"
    recordings = asterisk.chroot / inside.lstrip("/")
    settings = engine_settings(f"sqlite:///{tmp_path / 'timeline.db'}", tmp_path / "spool")
    settings = settings.model_copy(
        update={
            "menus_dir": menus,
            "speech_recordings_dir": recordings,
            "speech_switch_dir": inside,
            "speech_timeout_ms": 10_000,
        }
    )
    menu_prompts = [
        "ivr-engine/welcome",
        *("ivr-engine/for", "ivr-engine/label-billing", "ivr-engine/press", "digits/1"),
        *("ivr-engine/for", "ivr-engine/label-operator", "ivr-engine/press", "digits/0"),
        "ivr-engine/say-or-press",
    ]
    listen_at_ms = round((ANSWER_S + prompt_seconds(asterisk, menu_prompts) + 0.5) * 1000)
    pcap = speech_pcap(rms_voice("I want to pay my bill", tmp_path), tmp_path / "said.pcap")
    try:
        async with running_engine(settings) as eng:
            result = await run_sipp_call(
                [("wait", listen_at_ms + 1000), ("audio", pcap), ("wait", 15_000)],
                caller_id=caller,
            )
            routed = await ami.wait_for_event(
                "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=30
            )
            _, event = await wait_for_call_event(store_of(eng), caller)
        leftovers = list(recordings.iterdir())
    finally:
        shutil.rmtree(recordings, ignore_errors=True)

    assert result.ok, result.describe()
    execs = ami.agi_execs(caller_id=caller)
    records = [e for e in execs if e.command.startswith("RECORD FILE")]
    assert len(records) == 1, [e.command for e in execs]
    assert records[0].command.startswith(f'RECORD FILE "{inside}/ivr-speech-')
    assert (routed["Intent"], routed["Target"]) == ("billing", "queue:billing")
    speech = [step for step in event.data["path"] if step["step"] == "speech"]
    assert speech and speech[0]["intent"] == "billing", event.data["path"]
    assert event.intent == "billing"
    assert leftovers == []  # the engine deleted the recording
