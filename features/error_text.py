"""How a failure reads in messages, logs and answers: one line, bounded, no credentials.

Errors from the model store (MLflow, its HTTP client, the artifact store) quote URLs as
they were given, ``user:password@`` included, and put the cause last (``... (Caused by
NewConnectionError(...: Connection refused))``, or a list of failed files on the lines
after the first). ``error_summary`` keeps every line, masks credentials, and when the text
is too long keeps its start and its end, where the cause is.
"""

from __future__ import annotations

import re

#: ``scheme://user:password@host``: everything from ``://`` to the last ``@`` before the
#: next space (a password may hold ``/``, quotes, ``@`` even; a few characters too many
#: masked is the safe side).
_CREDENTIALS = re.compile(r"(?<=://)[^\s@]*@(?:[^\s@]*@)*")
MASKED_CREDENTIALS = "***@"
#: ``?password=...`` and the like in a URL's query (a database URI may carry them there).
_QUERY_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)=[^&\s]*")
#: Characters kept from each end of a long message.
HEAD_CHARS = 200
TAIL_CHARS = 200


def without_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it masked as ``***@``, and any
    ``password=``-like query parameter as ``password=***``."""
    # The substring tests spare every log line without a URL or a parameter the regexes.
    if "://" in text:
        text = _CREDENTIALS.sub(MASKED_CREDENTIALS, text)
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\1=***", text)
    return text


def error_summary(error: BaseException, *, with_kind: bool = False) -> str:
    """The error's message on one line, credentials masked, at most about 400 characters:
    its start and its end (the cause) when longer.

    Args:
        error: the failure; MLflow's exceptions give their ``message``.
        with_kind: prefix the exception's type name (``OSError: ...``), for errors whose
            message alone does not say what failed.
    """
    text = str(getattr(error, "message", None) or error)
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    text = without_credentials(text)
    if len(text) > HEAD_CHARS + TAIL_CHARS + 5:
        text = f"{text[:HEAD_CHARS]} ... {text[-TAIL_CHARS:]}"
    kind = type(error).__name__
    if not text:
        return kind
    return f"{kind}: {text}" if with_kind else text
