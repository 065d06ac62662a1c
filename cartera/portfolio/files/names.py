"""Names of the files a creditor leaves in its inbox, as the file system or the server gives them.

Python hands a name that is not valid UTF-8 (a Windows-1252 ERP's ``asignación-peña.csv``) over with its bytes as
lone surrogates; nothing downstream can store or send such a name (the store's batch source, an SFTP request). The
``csv`` and ``sftp_csv`` plugins skip such a file with one warning naming it escaped (``pe\\xf1a.csv``): the
creditor renames it.
"""

from __future__ import annotations


def is_utf8_name(name: str) -> bool:
    """Whether ``name`` was valid UTF-8 (holds no surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(name: str) -> str:
    """``name`` as logs show it: bytes that are not UTF-8 escaped (``caf\\xe9.csv``)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
