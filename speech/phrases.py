"""Pure phrase logic: normalising menus, checking them, the JSGF grammar, and the accept rule.

No I/O and no pocketsphinx here: the vocabulary is passed in as a set of words.

The accept rule is what keeps wrong answers out. The grammar decode always returns *some*
configured phrase (or nothing) however far from the menu the caller strays, so its candidate is
accepted only when the open-vocabulary transcript of the same audio agrees: it contains a phrase
of the same intent, or one of the candidate phrase's distinctive words (a content word that no
other intent of the menu uses). A transcript that also contains another intent's phrase or
distinctive word is ambiguous and accepts nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Words a caller wraps around an option ("I want to pay my bill please"). The grammar lets any
# number of them surround the one phrase, so they do not have to be forced into a phrase; they
# never count as evidence for a phrase in the accept rule.
FILLER_WORDS: tuple[str, ...] = (
    "i", "want", "to", "my", "is", "the", "a", "an", "please", "about", "like", "need",
    "it", "me", "for", "with", "some", "and", "uh",
)  # fmt: skip
# Words that say nothing about which option was meant (fillers and a few more).
STOP_WORDS: frozenset[str] = frozenset(FILLER_WORDS) | {"of", "in", "on", "at", "do", "be"}

_WORD = re.compile(r"[a-z][a-z']*")

# menu -> intent -> phrases (each a tuple of lower-case words)
Phrase = tuple[str, ...]
MenuPhrases = dict[str, tuple[Phrase, ...]]


@dataclass(frozen=True, slots=True)
class Choice:
    intent: str
    phrase: str


def words_of(text: str) -> Phrase:
    """Lower-cased words of a phrase or transcript, split on white space."""
    return tuple(text.lower().split())


def normalise(grammars: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, MenuPhrases]:
    """menu -> intent -> phrases, as tuples of lower-case words without duplicates or blanks."""
    menus: dict[str, MenuPhrases] = {}
    for menu, intents in grammars.items():
        menus[menu] = {
            intent: tuple(dict.fromkeys(w for w in map(words_of, phrases) if w))
            for intent, phrases in intents.items()
        }
    return menus


def phrase_problems(
    grammars: Mapping[str, Mapping[str, Sequence[str]]], vocabulary: frozenset[str]
) -> list[str]:
    """One readable line per problem: unknown words, empty phrases, a phrase on two intents."""
    problems: list[str] = []
    for menu, intents in grammars.items():
        if not intents:
            problems.append(f"menu {menu!r}: no intents")
        owner: dict[Phrase, str] = {}
        for intent, phrases in intents.items():
            if isinstance(phrases, str):
                problems.append(
                    f"menu {menu!r}, intent {intent!r}: phrases must be a list, not {phrases!r}"
                )
                continue
            if not phrases:
                problems.append(f"menu {menu!r}, intent {intent!r}: no phrases")
            for phrase in phrases:
                problems.extend(_one_phrase(menu, intent, phrase, vocabulary, owner))
    return problems


def _one_phrase(
    menu: str, intent: str, phrase: str, vocabulary: frozenset[str], owner: dict[Phrase, str]
) -> list[str]:
    where = f"menu {menu!r}, intent {intent!r}, phrase {phrase!r}"
    words = words_of(phrase)
    if not words:
        return [f"{where}: empty phrase"]
    unknown = [w for w in dict.fromkeys(words) if w not in vocabulary or not _WORD.fullmatch(w)]
    if unknown:
        return [f"{where}: not in the pronunciation dictionary: {', '.join(unknown)}"]
    first = owner.setdefault(words, intent)
    if first != intent:
        return [f"{where}: the same phrase is also given to intent {first!r}"]
    return []


def jsgf(phrases: MenuPhrases) -> str:
    """The menu's grammar: any fillers, exactly one configured phrase, any fillers."""
    options = sorted({" ".join(p) for ps in phrases.values() for p in ps})
    return (
        "#JSGF V1.0;\ngrammar menu;\n"
        f"<fill> = {' | '.join(FILLER_WORDS)};\n"
        f"public <say> = <fill>* ( {' | '.join(options)} ) <fill>*;\n"
    )


def _contains(words: Phrase, part: Phrase) -> bool:
    n = len(part)
    return any(words[i : i + n] == part for i in range(len(words) - n + 1))


def _phrases_in(phrases: MenuPhrases, words: Phrase) -> list[tuple[str, Phrase]]:
    """The configured phrases in `words`, dropping those inside a longer found one."""
    found = [(i, p) for i, ps in phrases.items() for p in ps if _contains(words, p)]
    return [
        (i, p) for i, p in found if not any(len(q) > len(p) and _contains(q, p) for _, q in found)
    ]


def distinctive_words(phrases: MenuPhrases, intent: str, phrase: Phrase) -> set[str]:
    """Content words of `phrase` that no other intent of the menu uses."""
    others = {w for i, ps in phrases.items() if i != intent for p in ps for w in p}
    return {w for w in phrase if w not in STOP_WORDS and w not in others}


def _evidence(phrases: MenuPhrases, transcript: Phrase) -> set[str]:
    """Intents the transcript speaks for: a whole phrase, or a distinctive word of one."""
    said = set(transcript)
    return {
        intent
        for intent, ps in phrases.items()
        for p in ps
        if _contains(transcript, p) or distinctive_words(phrases, intent, p) & said
    }


def choose(phrases: MenuPhrases, grammar_hyp: str, transcript: str) -> Choice | None:
    """The grammar's candidate if the open transcript confirms it and nothing else; else None."""
    found = _phrases_in(phrases, words_of(grammar_hyp))
    if len({i for i, _ in found}) != 1:
        return None
    intent, phrase = found[0]
    heard = words_of(transcript)
    evidence = _evidence(phrases, heard)
    confirmed = _contains(heard, phrase) or bool(
        distinctive_words(phrases, intent, phrase) & set(heard)
    )
    if evidence - {intent} or not (confirmed or intent in evidence):
        return None
    return Choice(intent, " ".join(phrase))
