"""Redaction: the one set of rules that says which names hold secrets, used
everywhere a value could leak. The recording cores never summarize a secret
argument (its value is recorded as ``[redacted]``, so none reaches the spool on
disk), secret values on the command line (``--password x``, ``token=...``) are
redacted in ``argv``, and ``redact`` checks a built trace once more.

A name is split into words (snake_case, camelCase, kebab-case, digits apart):
it is secret when one of its words is in ``SECRET_WORDS`` (``password``,
``pwd``, ``secret``, ``auth``, ...), when its last word is ``token``
(``token``, ``auth_token``, ``accessToken``; not ``token_ids``, ``num_tokens``,
``tokenizer``), when two words in a row are in ``SECRET_PAIRS`` (``api_key``,
``apiKey``, ``private_key``, ``session_id``), or when an extra regular
expression (``--redact REGEX``) is found in it, case-insensitively. A name given
to ``--show`` is never secret. Values are matched by the argument's name only: a
secret inside another value (a dict passed as ``config``, a returned token) is
not found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_tracer.trace.model import Trace

REDACTED = "[redacted]"
SECRET_WORDS = frozenset(
    "password passwords passwd pwd passphrase secret secrets apikey auth authorization "
    "authentication oauth bearer cookie cookies credential credentials creds "
    "privatekey jwt signature sessionid".split()
)
LAST_WORDS = frozenset({"token"})  # secret only as the name's last word
SECRET_PAIRS = frozenset(
    {("api", "key"), ("private", "key"), ("access", "key"), ("session", "id"), ("session", "key")}
)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def words(name: str) -> list[str]:
    """The lower-case words of a name: ``HTTPAuthToken`` -> http, auth, token."""
    return [word.lower() for word in _WORD.findall(name)]


@dataclass(frozen=True)
class SecretNames:
    """Which names hold secrets: the rules above, ``extra`` regular expressions
    (searched case-insensitively) and ``show``, names never redacted."""

    extra: tuple[str, ...] = ()
    show: tuple[str, ...] = ()
    _extra: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for expression in self.extra:
            re.compile(expression)  # raises re.error for a bad one, naming it
        joined = "|".join(f"(?:{e})" for e in self.extra)
        object.__setattr__(self, "_extra", re.compile(joined, re.I) if joined else None)

    def is_secret(self, name: str) -> bool:
        """Whether values named ``name`` are redacted."""
        if name in self.show:
            return False
        parts = words(name)
        if not SECRET_WORDS.isdisjoint(parts) or (parts and parts[-1] in LAST_WORDS):
            return True
        if any(pair in SECRET_PAIRS for pair in zip(parts, parts[1:], strict=False)):
            return True
        return self._extra is not None and self._extra.search(name) is not None

    def to_json(self) -> dict[str, list[str]]:
        """What followed processes need to apply the same rules."""
        return {"extra": list(self.extra), "show": list(self.show)}

    @classmethod
    def from_json(cls, value: dict[str, list[str]]) -> SecretNames:
        return cls(tuple(value.get("extra", ())), tuple(value.get("show", ())))


def secret_names(extra: Iterable[str] = (), show: Iterable[str] = ()) -> SecretNames:
    """The rules with ``extra`` patterns and ``show`` names; raises ``re.error``."""
    return SecretNames(tuple(extra), tuple(show))


_OPTION = re.compile(r"^(-{0,2})([A-Za-z_][\w.-]*)(=)(.*)$", re.S)


def redact_argv(argv: Sequence[str], names: SecretNames | None) -> list[str]:
    """``argv`` with the values of secret-named options redacted: ``--password x``,
    ``--api-key=x``, ``token=x`` and ``-p``-less forms such as ``--secret x``."""
    out = [str(word) for word in argv]
    if names is None:
        return out
    for i, word in enumerate(out):
        match = _OPTION.match(word)
        if match is not None:
            if names.is_secret(match.group(2)):
                out[i] = f"{match.group(1)}{match.group(2)}={REDACTED}"
            continue
        value = i + 1 < len(out) and not out[i + 1].startswith("-")
        if word.startswith("-") and value and names.is_secret(word.lstrip("-")):
            out[i + 1] = REDACTED
    return out


def redact(trace: Trace, names: SecretNames | None) -> int:
    """Replace secret argument values in ``trace`` (the cores already recorded
    them redacted) and secret values in its ``argv``; returns how many calls had
    a secret argument. Records what was done in ``trace.meta["redaction"]``."""
    import numpy as np  # after the run (the name rules are needed before it)

    if names is None:
        trace.meta["redaction"] = {"enabled": False}
        return 0
    _redact_command_lines(trace.meta, names)
    secret = [
        tuple(i for i, name in enumerate(f.argnames) if names.is_secret(name))
        for f in trace.functions
    ]
    calls = trace.calls
    has_secret = np.array([bool(positions) for positions in secret], dtype=bool)
    rows = np.flatnonzero((calls.args >= 0) & has_secret[calls.function]) if len(calls) else []
    if len(rows):
        replacement = _string_index(trace, REDACTED)
        pairs = np.stack((calls.function[rows].astype(np.int64), calls.args[rows]), axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        new_index = []
        for function, args in unique.tolist():
            values = list(trace.arg_tuples[args])
            if all(values[p] in (replacement, -1) for p in secret[function] if p < len(values)):
                new_index.append(args)  # already redacted when recorded
                continue
            for position in secret[function]:
                if position < len(values) and values[position] >= 0:
                    values[position] = replacement
            new_index.append(len(trace.arg_tuples))
            trace.arg_tuples.append(tuple(values))
        calls.args[rows] = np.asarray(new_index, dtype=calls.args.dtype)[inverse.reshape(-1)]
    trace.meta["redaction"] = {"enabled": True, **names.to_json(), "calls": len(rows)}
    return len(rows)


def _redact_command_lines(meta: dict[str, Any], names: SecretNames) -> None:
    if meta.get("argv"):
        meta["argv"] = redact_argv(meta["argv"], names)
    for process in meta.get("processes") or ():
        process["argv"] = redact_argv(process.get("argv") or [], names)


def _string_index(trace: Trace, text: str) -> int:
    try:
        return trace.strings.index(text)
    except ValueError:
        trace.strings.append(text)
        return len(trace.strings) - 1
