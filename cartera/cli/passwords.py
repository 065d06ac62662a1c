"""A new web user's password: from the environment (scripts) or typed twice at a terminal, never an argument."""

from __future__ import annotations

import getpass
import os
import sys

from cartera.core.errors import UsageError

PASSWORD_ENV = "CARTERA_USER_PASSWORD"


def new_password(name: str) -> str:
    """``$CARTERA_USER_PASSWORD`` when set, else typed twice at the terminal; a usage error without either."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        raise UsageError(f"set {PASSWORD_ENV} or run 'users add' in a terminal to type the password")
    password = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != password:
        raise UsageError("the two passwords differ")
    return password
