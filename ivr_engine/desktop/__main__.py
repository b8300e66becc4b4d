"""``python -m ivr_engine.desktop hash-password | new-token``: credentials for agents.yaml."""

from __future__ import annotations

import getpass
import sys

from ivr_engine.desktop.passwords import hash_password, new_api_token

USAGE = "usage: python -m ivr_engine.desktop hash-password | new-token"


def main(argv: list[str]) -> int:
    if argv == ["hash-password"]:
        password = getpass.getpass("password: ")
        if not password or password != getpass.getpass("again: "):
            print("passwords empty or different", file=sys.stderr)
            return 1
        print(f"password_hash: {hash_password(password).encode()}")
        return 0
    if argv == ["new-token"]:
        token, digest = new_api_token()
        print(f"token (give it to the agent, once): {token}")
        print(f"token_sha256: {digest}")
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
