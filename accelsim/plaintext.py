"""Names read from files (models, layers, traces, architectures) shown as plain text.

A name in a trace or a report is data. It must never be parsed as rich console markup
(`[/evil]` makes rich raise), as matplotlib mathtext (`$\\frac{$` makes the figure fail), and
a newline or an escape character in it must not break a table row or move the terminal's
cursor. Ordinary names come out unchanged.
"""

from __future__ import annotations


def visible(text) -> str:
    """str(text) with every non-printable character (newline, tab, ESC, zero-width space...)
    written as its Python escape (\\n, \\t, \\x1b, \\u200b), so it shows and takes one line."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)


def rich_text(text):
    """A rich Text of `visible(text)`: rich never parses markup or emoji codes in a Text."""
    from rich.text import Text

    return Text(visible(text))


def mpl_text(text) -> str:
    """`visible(text)` with every `$` escaped, so matplotlib draws it literally (an even number
    of unescaped `$` would switch to mathtext, which raises on unbalanced TeX)."""
    return visible(text).replace("$", r"\$")
