"""Untrusted text made safe for where kvspec writes it: generated Python, terminals, Markdown.

A trace file is untrusted input (see ``docs/mocker.md``).  Every string it carries — the summary,
version fields, subjects, error types, recorded messages — may contain quotes, newlines, triple
quotes, terminal escape sequences or Unicode that reorders text.  The rule: trace-derived text
reaches

* **generated Python source** only as a ``repr`` literal, as a validated ASCII identifier
  (:func:`identifier`), or inside a comment line made by :func:`comment` (one line, ASCII, every
  control character escaped), never inside a docstring or any other string we close ourselves;
* **a terminal** only through :func:`terminal` (C0/C1 control characters and bidirectional
  overrides escaped; newlines and tabs kept);
* **Markdown code fences** only inside a fence longer than any backtick run in the text
  (:func:`fence`).

>>> comment('x = 1\\nopen("pwned", "w")\\x00')
'x = 1 open("pwned", "w")\\\\x00'
>>> terminal("red \\x1b[31m text")
'red \\\\x1b[31m text'
>>> identifier("weird name\\u00e9!")
'weird_name__'
"""

from __future__ import annotations

import keyword
import re

__all__ = ["comment", "fence", "identifier", "is_identifier", "terminal"]

#: Characters that change how a terminal or an editor shows the following text: C0 and C1
#: controls (ESC starts escape sequences, CR overwrites a line) and the bidirectional
#: formatting characters behind "Trojan Source" (CVE-2021-42574).
_UNSAFE_FOR_TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                                  "\u2028\u2029\ufeff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: object) -> str:
    """``text`` with every character that could steer a terminal escaped (newlines, tabs kept)."""
    return _UNSAFE_FOR_TERMINAL.sub(_escape_char, str(text))


def comment(text: object, limit: int = 200) -> str:
    """``text`` as the body of one Python comment line: whitespace folded, ASCII only, escaped.

    ``ascii`` escapes every non-ASCII and non-printable character (``\\n``, ``\\r``, ``\\x00``,
    ``\\x0c``, U+2028 …), so nothing can end the comment line or hide in it.
    """
    folded = " ".join(str(text).split())
    escaped = ascii(folded)[1:-1]
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def is_identifier(name: object) -> bool:
    """An ASCII Python identifier that is not a keyword and not private (no leading underscore)."""
    return (isinstance(name, str) and name.isascii() and name.isidentifier()
            and not keyword.iskeyword(name) and not name.startswith("_"))


def identifier(name: str, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """A safe ASCII identifier derived from ``name`` and not in ``taken``."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not ident or ident[0].isdigit() or ident.startswith("_") or keyword.iskeyword(ident):
        ident = f"s_{ident}"
    base, n = ident, 1
    while ident in taken:
        n += 1
        ident = f"{base}_{n}"
    return ident


def fence(text: str, lang: str = "") -> list[str]:
    """``text`` as a Markdown code block whose fence no backtick run inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    marker = "`" * max(3, longest + 1)
    return [f"{marker}{lang}", text, marker]
