"""Tests of the synthetic demo site (core.demo): TOA5 layout, realism, faults."""

from __future__ import annotations

import ast
import csv
import io
import re
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import demo
from core.demo import COLUMNS, FAULTS, STATIONS, Fault, faults, generate

NCOL = len(COLUMNS)
NUMBER = re.compile(rb"^-?\d+(\.\d+)?$")
STAT_GROUPS = [c[:-4] for c in COLUMNS if c.endswith("_Max")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The full default demo year, generated once."""
    out = tmp_path_factory.mktemp("demo")
    return out, generate(out)


@pytest.fixture(scope="module")
def frames(site: tuple[Path, list[Path]]) -> dict[str, pd.DataFrame]:
    """Station name -> all data rows of that station, indexed by timestamp."""
    out, _ = site
    result = {}
    for st in STATIONS:
        files = sorted((out / st.slug).glob("*.dat"))
        body = b"".join(f.read_bytes().split(b"\r\n", 4)[4] for f in files)
        df = pd.read_csv(io.BytesIO(body), names=list(COLUMNS), na_values=["NAN"],
                         keep_default_na=False)
        df["TIMESTAMP"] = pd.to_datetime(df["TIMESTAMP"], format="%Y-%m-%d %H:%M:%S")
        result[st.name] = df.set_index("TIMESTAMP")
    return result


def _window(df: pd.DataFrame, fault: Fault) -> pd.DataFrame:
    """Rows affected by ``fault``: start < timestamp <= end."""
    s0, s1 = (pd.Timestamp(x.replace(tzinfo=None)) for x in (fault.start, fault.end))
    return df[(df.index > s0) & (df.index <= s1)]


def _faults(kind: str) -> list[Fault]:
    found = [f for f in FAULTS if f.kind == kind]
    assert found, kind
    return found


def test_public_constants() -> None:
    assert len(STATIONS) == 3
    assert len({s.name for s in STATIONS}) == len({s.slug for s in STATIONS}) == 3
    assert {f.kind for f in FAULTS} == {"stuck", "icing", "gap", "dead"}
    year = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    for f in FAULTS:
        assert f.station in {s.name for s in STATIONS}
        assert year[0] <= f.start < f.end <= year[1]
        assert f.start.tzinfo is UTC and f.description
        assert set(f.columns) <= set(COLUMNS)
    assert COLUMNS[:2] == ("TIMESTAMP", "RECORD") and len(COLUMNS) == 43


def test_core_does_not_import_streamlit() -> None:
    tree = ast.parse(Path(demo.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] == "streamlit"]


def test_fault_covers_uses_period_end_stamps() -> None:
    f = _faults("gap")[0]
    assert not f.covers(f.start)
    assert f.covers(f.start + timedelta(minutes=10))
    assert f.covers(f.end.replace(tzinfo=None))
    assert not f.covers(f.end + timedelta(minutes=10))


def test_files_and_gap(site: tuple[Path, list[Path]]) -> None:
    out, paths = site
    gap = _faults("gap")[0]
    assert gap.end - gap.start == timedelta(days=3)
    assert len(paths) == 2 * 365 - 3 + 30  # Curlew Point was installed on 2 December
    expected = []
    for st in STATIONS:
        for i in range(365):
            day = date(2025, 1, 1) + timedelta(days=i)
            path = out / st.slug / f"{st.slug}_Met10min_{day:%Y%m%d}.dat"
            missing = (st.name == gap.station and gap.start.date() <= day < gap.end.date()
                       or st.name == "Curlew Point" and day < date(2025, 12, 2))
            assert path.is_file() != missing
            if not missing:
                expected.append(path)
    assert paths == expected


def test_header_and_row_structure(site: tuple[Path, list[Path]]) -> None:
    _, paths = site
    for path in paths:
        raw = path.read_bytes()
        assert raw.endswith(b"\r\n")
        lines = raw[:-2].split(b"\r\n")
        late = path == paths[-1]  # Curlew Point's data arrives 5 hours late
        assert len(lines) == 4 + 144 - (30 if late else 0)
        header = [next(csv.reader([ln.decode()])) for ln in lines[:4]]
        st = next(s for s in STATIONS if path.parent.name == s.slug)
        assert header[0] == ["TOA5", st.name, "CR1000X", st.logger_serial, "CR1000X.Std.06.02",
                             "CPU:MetMast.CR1X", st.program_signature, "Met10min"]
        assert tuple(header[1]) == COLUMNS
        assert [len(h) for h in header[1:]] == [NCOL] * 3
        for ln in lines[:4]:
            assert all(re.fullmatch(rb'"[^"]*"', f) for f in ln.split(b","))
        assert all(ln.count(b",") == NCOL - 1 for ln in lines[4:])
    units = dict(zip(COLUMNS, header[2]))
    assert units["WS_80m_NE_Avg"] == "m/s" and units["WD_78m_Avg"] == "Deg"
    assert units["AirT_2m_Min"] == "Deg C" and units["RH_2m_Avg"] == "%"
    assert units["BP_2m_Max"] == "hPa" and units["BattV_Min"] == "Volts"
    procs = dict(zip(COLUMNS, header[3]))
    assert procs["WS_40m_SW_Std"] == "Std" and procs["BattV_Min"] == "Min"


def test_data_field_quoting(site: tuple[Path, list[Path]]) -> None:
    _, all_paths = site
    dead = _faults("dead")[0]
    paths = [p for p in all_paths if p.parent.name == "kestrel-ridge"]
    for path in (paths[0], paths[-1], all_paths[-1]):
        for ln in path.read_bytes().split(b"\r\n")[4:-1]:
            fields = ln.split(b",")
            assert re.fullmatch(rb'"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"', fields[0])
            assert all(NUMBER.match(f) or f == b'"NAN"' for f in fields[1:])
    last = paths[-1].read_bytes().split(b"\r\n")[-2].split(b",")
    rh = COLUMNS.index(dead.columns[0])
    assert last[rh] == b'"NAN"'


def test_timestamps_and_records(site: tuple[Path, list[Path]]) -> None:
    _, paths = site
    gap = _faults("gap")[0]
    for st in STATIONS:
        files = [p for p in paths if p.parent.name == st.slug]
        stamps, records = [], []
        for path in files:
            rows = list(csv.reader(path.read_text().splitlines()[4:]))
            day = datetime.strptime(path.stem[-8:], "%Y%m%d")
            assert rows[0][0] == f"{day:%Y-%m-%d} 00:10:00"
            late = st.name == "Curlew Point" and path == files[-1]
            assert rows[-1][0] == (f"{day:%Y-%m-%d} 19:00:00" if late
                                   else f"{day + timedelta(days=1):%Y-%m-%d} 00:00:00")
            stamps += [r[0] for r in rows]
            records += [int(r[1]) for r in rows]
        ts = pd.to_datetime(pd.Series(stamps), format="%Y-%m-%d %H:%M:%S")
        step = ts.diff().dropna().value_counts()
        rec = np.diff(records)
        assert records[0] == 0
        if st.name == gap.station:
            assert step.to_dict() == {pd.Timedelta("10min"): len(ts) - 2,
                                      pd.Timedelta("3D10min"): 1}
            assert sorted(set(rec)) == [1, 3 * 144 + 1]
        else:
            assert step.to_dict() == {pd.Timedelta("10min"): len(ts) - 1}
            assert set(rec) == {1}


def test_statistics_consistent(frames: dict[str, pd.DataFrame]) -> None:
    for df in frames.values():
        for g in STAT_GROUPS:
            ok = df[f"{g}_Avg"].notna()
            d = df[ok]
            assert (d[f"{g}_Min"] <= d[f"{g}_Avg"]).all(), g
            assert (d[f"{g}_Avg"] <= d[f"{g}_Max"]).all(), g
            assert (d[f"{g}_Std"] >= 0).all(), g
        ws = df.filter(regex=r"^WS_")
        assert (ws >= 0).all().all()
        wd = df[["WD_78m_Avg", "WD_58m_Avg"]]
        assert ((wd >= 0) & (wd < 360)).all().all()
        rh = df.filter(regex=r"^RH_2m_(Avg|Min|Max)$").dropna()
        assert ((rh >= 0) & (rh <= 100)).all().all()
        assert df["BattV_Min"].between(12.4, 13.8).all()


def test_realism(frames: dict[str, pd.DataFrame]) -> None:
    means = {}
    for st in STATIONS:
        df = frames[st.name]
        means[st.name] = df["WS_80m_SW_Avg"].mean()
        if len(df) > 300 * 144:  # a year (Curlew Point has a December: windier)
            assert means[st.name] == pytest.approx(st.mean_wind_ms, rel=0.1)
        for boom in ("NE", "SW"):
            m = [df[f"WS_{h}m_{boom}_Avg"].mean() for h in (80, 60, 40)]
            assert m[0] > m[1] > m[2]
            alpha = np.log(m[0] / m[2]) / np.log(2)
            assert 0.1 < alpha < 0.22
        strong = df["WS_80m_SW_Avg"] > 4
        ti = (df["WS_80m_SW_Std"] / df["WS_80m_SW_Avg"])[strong].median()
        assert 0.08 < ti < 0.15
        wd = df["WD_78m_Avg"]
        sw, ne = wd.between(200, 250), wd.between(20, 70)
        assert sw.mean() > 2 * ne.mean()
        ratio = df["WS_80m_NE_Avg"] / df["WS_80m_SW_Avg"]
        assert ratio[sw & strong].median() < 0.97 < 1.03 < ratio[ne & strong].median()
        temp = df["AirT_2m_Avg"]
        winter, summer = temp[df.index.month.isin([1, 2, 12])], temp[df.index.month.isin([6, 7, 8])]
        assert (winter < 0).any()
        if len(summer):
            assert summer.mean() > winter.mean() + 5
        assert temp.corr(df["RH_2m_Avg"]) < -0.2
        hourly = df.groupby(df.index.hour)[["AirT_2m_Avg", "RH_2m_Avg", "BattV_Min"]].mean()
        assert hourly.loc[14, "AirT_2m_Avg"] > hourly.loc[4, "AirT_2m_Avg"]
        assert hourly.loc[14, "RH_2m_Avg"] < hourly.loc[4, "RH_2m_Avg"]
        assert hourly.loc[13, "BattV_Min"] > hourly.loc[1, "BattV_Min"] + 0.3
        assert 970 < df["BP_2m_Avg"].mean() < 1010
        contiguous = df.index.to_series().diff() == pd.Timedelta("10min")
        assert df["BP_2m_Avg"].diff().abs()[contiguous].max() < 1.0
        assert df["WS_80m_SW_Avg"].autocorr(6) > 0.7
    assert means["Kestrel Ridge"] > means["Ballymore Hill"] + 0.7


def test_stuck_signature(frames: dict[str, pd.DataFrame]) -> None:
    for f in _faults("stuck"):
        df = frames[f.station]
        base = f.columns[0][:-4]
        w = _window(df, f)
        assert len(w) == (f.end - f.start) // timedelta(minutes=10) > 200
        assert w[f"{base}_Avg"].nunique() == 1
        assert (w[f"{base}_Std"] == 0).all()
        assert (w[f"{base}_Min"] == w[f"{base}_Avg"]).all()
        assert (w[f"{base}_Max"] == w[f"{base}_Avg"]).all()
        before = df[df.index <= pd.Timestamp(f.start.replace(tzinfo=None))].tail(36)
        after = df[df.index > pd.Timestamp(f.end.replace(tzinfo=None))].head(36)
        assert (before[f"{base}_Std"] > 0).all() and (after[f"{base}_Std"] > 0).all()
        other = [c for c in df if c.startswith("WS_") and c.endswith("_Std") and base not in c]
        assert (w[other] > 0).all().all()


def test_icing_signature(frames: dict[str, pd.DataFrame]) -> None:
    for f in _faults("icing"):
        df = frames[f.station]
        w = _window(df, f)
        assert 28 <= (f.end - f.start) / timedelta(hours=1) <= 32
        bases = sorted({c[:-4] for c in f.columns})
        for base in (b for b in bases if b.startswith("WS_")):
            assert w[f"{base}_Avg"].between(0, 0.3).all()
            assert (w[f"{base}_Std"] <= 0.02).all()
        for base in (b for b in bases if b.startswith("WD_")):
            assert w[f"{base}_Avg"].nunique() == 1 and (w[f"{base}_Std"] == 0).all()
        assert (w["AirT_2m_Max"] < -1).all() and (w["RH_2m_Min"] > 95).all()
        free = [c for c in df if c.startswith("WS_") and c.endswith("_Avg")
                and c not in f.columns]
        for c in free:
            assert w[c].mean() > 1.0
        after = df[df.index > pd.Timestamp(f.end.replace(tzinfo=None))].head(144)
        assert (after[f"{bases[0]}_Std"] > 0).mean() > 0.9


def test_dead_signature(frames: dict[str, pd.DataFrame]) -> None:
    for f in _faults("dead"):
        df = frames[f.station]
        inside = (df.index > pd.Timestamp(f.start.replace(tzinfo=None))) & (
            df.index <= pd.Timestamp(f.end.replace(tzinfo=None)))
        assert df.loc[inside, list(f.columns)].isna().all().all()
        assert df.loc[~inside, list(f.columns)].notna().all().all()
    dead_cols = {(f.station, c) for f in _faults("dead") for c in f.columns}
    for name, df in frames.items():
        nan_cols = {(name, c) for c in df if df[c].isna().any()}
        assert nan_cols <= dead_cols


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    kwargs = {"start": date(2025, 4, 8), "days": 3}
    a = generate(tmp_path / "a", seed=3, **kwargs)
    b = generate(tmp_path / "b", seed=3, **kwargs)
    c = generate(tmp_path / "c", seed=4, **kwargs)
    assert len(a) == len(b) == len(c) == 6  # Curlew Point logs from December only
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert all(x.read_bytes() != z.read_bytes() for x, z in zip(a, c))


def test_idempotent_with_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    kwargs = {"start": date(2025, 7, 20), "days": 6}
    first = generate(tmp_path, progress=lambda d, t: calls.append((d, t)), **kwargs)
    assert len(first) == 6 + 3  # Kestrel Ridge misses 22-24 July
    assert calls == [(i, 9) for i in range(1, 10)]
    stamps = {p: p.stat().st_mtime_ns for p in first}
    first[0].write_bytes(b"corrupted")
    again = generate(tmp_path, **kwargs)
    assert again == first
    assert all(p.stat().st_mtime_ns == stamps[p] for p in first[1:])
    reference = generate(tmp_path / "ref", **kwargs)
    assert first[0].read_bytes() == reference[0].read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


END = datetime(2026, 3, 4, 15, 37, tzinfo=UTC)  # any "now"


def test_a_demo_ending_now_is_current_with_one_mast_ok_one_late_one_faulty(tmp_path: Path) -> None:
    year_start = (END - timedelta(days=365)).date()
    paths = generate(tmp_path, end=END, days=365, year_start=year_start)
    last = {}
    for p in paths:
        rows = p.read_text().splitlines()[4:]
        last[p.parent.name] = rows[-1].split(",")
    stamp = {k: datetime.strptime(v[0].strip('"'), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
             for k, v in last.items()}
    assert stamp["ballymore-hill"] == stamp["kestrel-ridge"] == datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
    assert stamp["curlew-point"] == datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # late, not silent
    rh = COLUMNS.index("RH_2m_Avg")
    assert last["kestrel-ridge"][rh] == '"NAN"' and last["ballymore-hill"][rh] != '"NAN"'  # dead hygrometer
    found = faults(year_start)
    assert all(stamp["ballymore-hill"] - timedelta(days=365) < f.start < stamp["ballymore-hill"] for f in found)
    assert {p.parent.name for p in paths} == {"ballymore-hill", "kestrel-ridge", "curlew-point"}
    assert 2 * 365 - 3 + 25 <= len(paths) <= 2 * 366 - 3 + 35  # about the size of the demo year


def test_a_later_run_keeps_every_earlier_record_and_adds_the_new_ones(tmp_path: Path) -> None:
    origin = date(2026, 2, 20)
    kwargs = {"start": origin, "origin": origin, "year_start": origin - timedelta(days=340)}
    first = generate(tmp_path / "a", end=END, **kwargs)
    later = generate(tmp_path / "b", end=END + timedelta(days=1, hours=2), **kwargs)
    by_name = {p.name: p.read_bytes() for p in later}
    assert len(later) > len(first)
    for p in first:
        old, new = p.read_bytes(), by_name[p.name]
        if p.name.endswith("20260304.dat"):  # the day that was still going on: it grew
            assert new.startswith(old) and len(new) > len(old)
        else:
            assert new == old, p.name


def test_the_demo_logger_writes_the_next_records_of_the_demo_site(tmp_path: Path) -> None:
    origin = date(2026, 3, 3)
    site = generate(tmp_path / "site", start=origin, origin=origin, year_start=origin, end=END)
    later = generate(tmp_path / "later", start=origin, origin=origin, year_start=origin,
                     end=END + timedelta(minutes=30))
    path = demo.write_logger_file(tmp_path / "logger", origin, since=END, end=END + timedelta(minutes=30))
    assert path is not None and path.name == "ballymore-hill_Met10min_20260304_1600.dat"
    records = path.read_bytes().split(b"\r\n")[4:-1]
    # the same header as the site's files, and the three records after the site's last one,
    # exactly as a later run of the generator writes them (RECORD numbers too)
    day = [p for p in site if p.name == "ballymore-hill_Met10min_20260304.dat"][0]
    assert path.read_bytes().split(b"\r\n")[:4] == day.read_bytes().split(b"\r\n")[:4]
    grown = [p for p in later if p.name == day.name][0].read_bytes().split(b"\r\n")[4:-1]
    assert records == grown[-3:] and day.read_bytes().split(b"\r\n")[4:-1] == grown[:-3]
    assert [r.split(b",")[0] for r in records] == [b'"2026-03-04 15:40:00"', b'"2026-03-04 15:50:00"',
                                                    b'"2026-03-04 16:00:00"']
    assert demo.write_logger_file(tmp_path / "logger", origin, since=END, end=END) is None  # nothing new
    assert not list((tmp_path / "logger").glob("*.tmp"))


def test_the_demo_logger_writes_each_new_step_once_until_stopped(tmp_path: Path) -> None:
    origin, stop = date(2026, 3, 3), threading.Event()
    # 15:37 (15:30 ended), 15:39 (nothing new), 15:41 (15:40 ended)
    times = iter([END, END + timedelta(minutes=2), END + timedelta(minutes=4)])

    def clock() -> datetime:
        try:
            return next(times)
        except StopIteration:
            stop.set()
            return END + timedelta(minutes=4)

    demo.run_logger(tmp_path, origin, since=END - timedelta(minutes=20), stop=stop, every_s=0, clock=clock)
    files = sorted(tmp_path.glob("*.dat"))
    assert [p.name for p in files] == ["ballymore-hill_Met10min_20260304_1530.dat",
                                       "ballymore-hill_Met10min_20260304_1540.dat"]
    assert [len(p.read_bytes().split(b"\r\n")[4:-1]) for p in files] == [2, 1]
