"""Accuracy of the speech recogniser on flite's voices: accepted / missed / wrong / false accept.

    PYTHONPATH=. python bench/speech_accuracy.py [--voices awb,kal,rms,slt] [--details]

Synthesises every utterance below with each voice (flite, then sox to 8 kHz 16-bit mono, what
Asterisk's `RECORD FILE ... wav` writes) into a temporary directory, recognises them one at a
time through `PhraseRecognizer` (one worker) and prints a table to stdout. "wrong" (an
in-menu utterance given another intent) and "false" (an out-of-menu utterance given any
intent) must stay 0; a miss only sends the caller to the keypad.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

from speech import PhraseRecognizer
from tests.speech_audio import VOICES, say

MENU = {
    "billing": ["billing", "bill", "my bill", "pay my bill", "payment", "pay"],
    "tech": ["technical support", "internet"],
    "operator": ["agent", "an agent", "operator"],
    "moving": ["moving", "moving home"],
    "outage": ["outage", "an outage"],
    "cancel": ["cancel"],
}
# utterance -> the intent it should give (None: nothing should be accepted)
UTTERANCES: dict[str, str | None] = {
    "billing": "billing",
    "my bill": "billing",
    "I want to pay my bill": "billing",
    "payment": "billing",
    "technical support": "tech",
    "my internet is down": "tech",
    "an agent": "operator",
    "operator": "operator",
    "moving home": "moving",
    "report an outage": "outage",
    "cancel": "cancel",
    "hello there": None,
    "what is the weather like": None,
    "I do not know": None,
    "um": None,
    "can you call me back tomorrow": None,
}


HEADER = (
    "| voice | in-menu accepted | missed | wrong | out-of-menu rejected | false accept | ms/utt |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def outcome(want: str | None, got: str | None) -> str:
    if want is None:
        return "rejected" if got is None else "false"
    return "accepted" if got == want else "missed" if got is None else "wrong"


async def main(voices: list[str], details: bool) -> None:
    recognizer = await PhraseRecognizer.start({"main": MENU})
    print(HEADER)
    total: Counter[str] = Counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for voice in voices:
                row: Counter[str] = Counter()
                for text, want in UTTERANCES.items():
                    wav = say(text, voice, Path(tmp))
                    started = time.perf_counter()
                    heard = await recognizer.recognise("main", wav, timeout_s=30)
                    row["ms"] += round(1000 * (time.perf_counter() - started))
                    result = outcome(want, heard.intent)
                    row[result] += 1
                    if details:
                        print(f"  {voice} {text!r}: {result}, transcript {heard.transcript!r}")
                total += row
                print(_line(voice, row))
    finally:
        await recognizer.close()
    print(_line("all", total))


def _line(name: str, r: Counter[str]) -> str:
    n_in = r["accepted"] + r["missed"] + r["wrong"]
    n_out = r["rejected"] + r["false"]
    return (
        f"| {name} | {r['accepted']}/{n_in} | {r['missed']} | {r['wrong']} "
        f"| {r['rejected']}/{n_out} | {r['false']} | {r['ms'] / max(n_in + n_out, 1):.0f} |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--details", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.voices.split(","), args.details))
