"""Crossing channels from a call: continue by SMS (continuation tokens)."""
