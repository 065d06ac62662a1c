"""Names of the files a creditor leaves in its inbox, as the file system or the server gives them.

Python hands a name that is not valid UTF-8 (a Windows-1252 ERP's ``asignación-peña.csv``) over with its bytes as
lone surrogates; nothing downstream can store or send such a name (the store's batch source, an SFTP request), nor
one holding a NUL (a hostile SFTP server's). The ``csv`` and ``sftp_csv`` plugins skip such a file with one warning
naming it escaped (``pe\\xf1a.csv``): the creditor renames it.
"""

from __future__ import annotations

from cartera.core.control_characters import keepable, unkeepable


def is_keepable_name(name: str) -> bool:
    """Whether ``name`` was valid UTF-8 (holds no surrogate escapes) and holds no NUL (no file system lists one,
    but a hostile SFTP server can; no local path nor store can hold it)."""
    return unkeepable(name) is None


def shown_name(name: str) -> str:
    """``name`` as logs show it: bytes that are not UTF-8, and a NUL, escaped (``caf\\xe9.csv``, ``a\\x00b``)."""
    return keepable(name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
