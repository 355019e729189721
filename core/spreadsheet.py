"""Text that a spreadsheet may open: cells that cannot be read as formulas (CSV injection).

A spreadsheet (Excel, LibreOffice, Google Sheets) opening a CSV or tab-separated text file
reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and a leading tab or
carriage return can hide such a start; a formula can run commands (DDE) or send the sheet's
data away (``HYPERLINK``, ``WEBSERVICE``). Channel names come from logger files, station names
and notes from users, so any of them may start so. Following OWASP's rule for CSV injection,
such a text cell is written with a single quote ``'`` in front (spreadsheets show it as text)
and the field is quoted. Numbers are left alone: ``-3.2`` or ``-999`` is a value, not a
formula, and time stamps start with a digit.

Exports write their numbers and time stamps as typed values (never through here); every text
cell that leaves for a spreadsheet — export headers, the Windographer header block, cleaning
log sensors and reasons — goes through :func:`safe_cell` (or :func:`text_line`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: First characters that make a spreadsheet read a cell as a formula (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: What :func:`safe_cell` puts in front of such a cell.
PREFIX = "'"
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def is_formula_like(text: str) -> bool:
    """True when a spreadsheet could read ``text`` as a formula: it starts with one of
    :data:`FORMULA_STARTS` and is not a plain number.

    >>> [is_formula_like(t) for t in ("=1+1", "+33 1", "-cmd|' /C calc'!A0", "@SUM(A1)", "\\t=1", "\\r=1")]
    [True, True, True, True, True, True]
    >>> [is_formula_like(t) for t in ("-3.2", "-999", "+1e5", "2016-01-09 15:30", "Spd80mN", "a=b", "")]
    [False, False, False, False, False, False, False]
    """
    return text.startswith(FORMULA_STARTS) and _NUMBER.fullmatch(text) is None


def safe_cell(text: str) -> str:
    """``text`` as a spreadsheet shows it, never run: a formula-like text gets ``'`` in front.

    >>> print(safe_cell('=HYPERLINK("http://x")'), safe_cell("@cmd"), safe_cell("Spd80mN"), safe_cell("-999"))
    '=HYPERLINK("http://x") '@cmd Spd80mN -999
    """
    return PREFIX + text if is_formula_like(text) else text


def text_line(cells: Iterable[str], delimiter: str = ",", eol: str = "\n") -> str:
    r"""One line of delimited text from text cells: each made safe (:func:`safe_cell`), and
    quoted (``"`` doubled inside) when it was changed or holds the delimiter, a quote or a line
    break, as CSV readers and spreadsheets expect.

    >>> print(text_line(["Timestamp", "=1+2", "Speed [m/s]", 'say "hi", then go']), end="")
    Timestamp,"'=1+2",Speed [m/s],"say ""hi"", then go"
    >>> text_line(["Date/Time", "-cmd", "T2m"], "\t", "\r\n")
    'Date/Time\t"\'-cmd"\tT2m\r\n'
    """
    out = []
    for text in cells:
        cell = safe_cell(text)
        if cell != text or any(ch in cell for ch in (delimiter, '"', "\r", "\n")):
            cell = '"' + cell.replace('"', '""') + '"'
        out.append(cell)
    return delimiter.join(out) + eol


def one_line(text: str) -> str:
    r"""``text`` with its tabs and line breaks as spaces: one cell of one line of a header
    block (a tab or a line break would start a new cell or line, perhaps a formula).

    >>> one_line("North\tMast\r\n=1+1")
    'North Mast =1+1'
    """
    return text.replace("\t", " ").replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
