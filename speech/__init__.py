"""Speech input for "say or press" IVR menus: a phrase recogniser on pocketsphinx.

Each menu has intents, each intent a few phrases ("billing", "pay my bill"). A recording of
the caller is decoded twice in a worker process: against the menu's grammar (fillers, one
phrase, fillers) and with the model's open-vocabulary language model. The grammar's phrase is
accepted only when the open transcript agrees (`speech.phrases.choose`); otherwise nothing is
accepted and the caller presses a key. Wrong answers are what this avoids, at the cost of
misses: see bench/speech_accuracy.py.
"""

from speech.recognizer import Heard, PhraseRecognizer, SpeechConfigError, check_phrases

__all__ = ["Heard", "PhraseRecognizer", "SpeechConfigError", "check_phrases"]
