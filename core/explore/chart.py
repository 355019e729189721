"""A query result drawn as a chart, and written for download (CSV or Parquet).

:func:`figure` draws ``x`` against ``y`` (a column each), one trace per value of ``colour``,
as a line, scatter, bar or wind-rose (polar bar) chart; :func:`guess_axes` proposes the
axes of a result nobody chose them for. Text cells of the CSV that a spreadsheet would
run as formulas get a ``'`` in front (:mod:`core.spreadsheet`).
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq

from core.spreadsheet import safe_cell

KINDS = {"line": "Line", "scatter": "Scatter", "bar": "Bar", "rose": "Wind rose (polar bars)"}


def to_frame(table: pa.Table) -> pd.DataFrame:
    """The result as a DataFrame: column names made unique (``1``, ``1_2``), text
    (dictionary) columns as plain text, decimals (DuckDB's sum of integers) as floats a chart
    can draw."""
    names: list[str] = []
    for name in table.column_names:
        unique, k = name, 1
        while unique in names:
            k += 1
            unique = f"{name}_{k}"
        names.append(unique)
    columns = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        elif pa.types.is_decimal(col.type):
            col = col.cast(pa.float64())
        columns.append(col)
    return pa.Table.from_arrays(columns, names=names).to_pandas() if columns else pd.DataFrame()


def guess_axes(frame: pd.DataFrame) -> tuple[str | None, str | None, str | None]:
    """``(x, y, colour)`` for a result: x the first time column (else the first column), y the
    first other numeric column, colour the first other column holding text.

    >>> f = pd.DataFrame({"station": ["A"], "month": pd.to_datetime(["2025-01-01"]), "v": [1.0]})
    >>> guess_axes(f)
    ('month', 'v', 'station')
    >>> guess_axes(pd.DataFrame({"n": [1]}))
    ('n', None, None)
    """
    names = list(frame.columns)
    if not names:
        return None, None, None
    times = [c for c in names if pd.api.types.is_datetime64_any_dtype(frame[c])]
    x = times[0] if times else names[0]
    numbers = [c for c in names if c != x and pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    texts = [c for c in names if c != x and frame[c].map(lambda v: isinstance(v, str)).any()]
    return x, (numbers[0] if numbers else None), (texts[0] if texts else None)


def figure(frame: pd.DataFrame, x: str, y: str, colour: str | None = None, kind: str = "line") -> go.Figure:
    """The chart of ``y`` against ``x`` (by ``colour``), of kind ``line``, ``scatter``, ``bar``
    or ``rose`` (``x`` the direction in degrees, ``y`` the radius).

    >>> f = pd.DataFrame({"sector": [0, 90, 0], "percent": [5.0, 7.0, 2.0], "class": ["a", "a", "b"]})
    >>> [t.type for t in figure(f, "sector", "percent", "class", "rose").data]
    ['barpolar', 'barpolar']
    >>> figure(f, "sector", "percent", None, "bar").data[0].type
    'bar'
    """
    if kind not in KINDS:
        raise ValueError(f"chart kind {kind!r} is not one of {', '.join(KINDS)}")
    data = frame
    if colour is not None and colour in frame.columns:
        data = frame.assign(**{colour: frame[colour].astype(str)})  # one trace per value, numbers too
    common: dict[str, Any] = {"color": colour if colour in frame.columns else None}
    if kind == "rose":
        fig = px.bar_polar(data, r=y, theta=x, **common)
        fig.update_polars(angularaxis={"direction": "clockwise", "rotation": 90})
    elif kind == "bar":
        fig = px.bar(data, x=x, y=y, barmode="group", **common)
    elif kind == "scatter":
        fig = px.scatter(data, x=x, y=y, **common)
    else:
        fig = px.line(data.sort_values(x) if x in data.columns else data, x=x, y=y, markers=len(data) < 60,
                      **common)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend_title_text=colour or "")
    return fig


def to_csv(frame: pd.DataFrame) -> bytes:
    """The result as CSV (UTF-8), its text cells and headers safe for spreadsheets.

    >>> to_csv(pd.DataFrame({"=x": ["=1+1", "ok"], "v": [-1.5, 2.0]})).decode()
    "'=x,v\\n'=1+1,-1.5\\nok,2.0\\n"
    """
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object or isinstance(out[name].dtype, pd.StringDtype):
            out[name] = out[name].map(lambda v: safe_cell(v) if isinstance(v, str) else v)
    out.columns = [safe_cell(str(c)) for c in out.columns]
    return out.to_csv(index=False).encode()


def to_parquet(table: pa.Table) -> bytes:
    """The result as a Parquet file."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
