"""Ready-made queries an analyst runs first, over the snapshot's views.

``readings`` is the tidy table of every chosen station (``time`` UTC, ``station``,
``channel``, ``measurement_type``, ``height_m``, ``orientation_deg``, ``statistic``, ``unit``,
``value``, ``flag``); ``channels`` lists each channel once with its number of values and
first and last time (:data:`CHANNELS_SQL`). Each example names the chart that shows it best.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The ``channels`` view: one row per channel of the snapshot.
CHANNELS_SQL = """
SELECT station, channel, measurement_type, height_m, orientation_deg, statistic, unit,
       count(*) AS n_values, min(time) AS first_time, max(time) AS last_time
FROM readings
GROUP BY ALL
ORDER BY station, measurement_type, height_m DESC, channel
"""


@dataclass(frozen=True)
class Example:
    """A named query and the chart that shows it: ``x``, ``y``, ``colour`` (a column or
    None) and ``kind`` (one of :data:`core.explore.chart.KINDS`)."""

    name: str
    description: str
    sql: str
    x: str
    y: str
    colour: str | None = None
    kind: str = "line"


EXAMPLES: tuple[Example, ...] = (
    Example(
        "Monthly means per height",
        "The mean wind speed of each month at each height (the anemometers of one height together).",
        """-- Monthly mean wind speed at each height
SELECT date_trunc('month', time) AS month,
       station,
       height_m,
       station || ' ' || regexp_replace(height_m::VARCHAR, '\\.0$', '') || ' m' AS series,
       round(avg(value), 3) AS mean_speed,
       count(*) AS n_values
FROM readings
WHERE measurement_type = 'wind_speed' AND statistic = 'avg'
GROUP BY ALL
ORDER BY station, height_m DESC, month""",
        x="month", y="mean_speed", colour="series", kind="line"),
    Example(
        "Wind-shear exponent",
        "The power-law exponent α = ln(v₂/v₁) / ln(h₂/h₁) between the highest and the lowest "
        "anemometer height of each station, month by month, from concurrent 10-minute means "
        "above 3 m/s.",
        """-- Wind-shear exponent between two heights, per month
-- (the highest and the lowest height of each station; put numbers in 'heights' to choose)
WITH speed AS (
    SELECT station, time, height_m, avg(value) AS v      -- the cups of one height together
    FROM readings
    WHERE measurement_type = 'wind_speed' AND statistic = 'avg'
    GROUP BY ALL
), heights AS (
    SELECT station, min(height_m) AS lower_m, max(height_m) AS upper_m
    FROM speed
    GROUP BY station
    HAVING min(height_m) < max(height_m)
), pairs AS (
    SELECT s.station, s.time, h.lower_m, h.upper_m,
           max(s.v) FILTER (WHERE s.height_m = h.lower_m) AS v_lower,
           max(s.v) FILTER (WHERE s.height_m = h.upper_m) AS v_upper
    FROM speed s JOIN heights h USING (station)
    GROUP BY ALL
)
SELECT date_trunc('month', time) AS month,
       station,
       lower_m,
       upper_m,
       round(ln(avg(v_upper) / avg(v_lower)) / ln(any_value(upper_m) / any_value(lower_m)), 4) AS shear_exponent,
       count(*) AS n_pairs
FROM pairs
WHERE v_lower > 3 AND v_upper > 3
GROUP BY ALL
ORDER BY station, month""",
        x="month", y="shear_exponent", colour="station", kind="line"),
    Example(
        "Wind-rose table",
        "How often the wind blows from each 30° sector in each speed class, in % of the concurrent "
        "readings of the highest vane and the highest anemometer of each station.",
        """-- Wind rose: frequency by direction sector and speed class
WITH vane AS (
    SELECT station, arg_max(channel, height_m) AS channel
    FROM readings
    WHERE measurement_type = 'wind_direction' AND statistic = 'avg'
    GROUP BY station
), cup AS (
    SELECT station, arg_max(channel, height_m) AS channel
    FROM readings
    WHERE measurement_type = 'wind_speed' AND statistic = 'avg'
    GROUP BY station
), paired AS (
    SELECT d.station, d.value AS direction, s.value AS speed
    FROM readings d
    JOIN vane ON vane.station = d.station AND vane.channel = d.channel
    JOIN readings s ON s.station = d.station AND s.time = d.time
    JOIN cup ON cup.station = s.station AND cup.channel = s.channel
)
SELECT station,
       (floor(((direction + 15) % 360) / 30) * 30)::INTEGER AS sector_deg,
       CASE WHEN speed < 4 THEN '0-4 m/s' WHEN speed < 8 THEN '4-8 m/s'
            WHEN speed < 12 THEN '8-12 m/s' ELSE '12+ m/s' END AS speed_class,
       count(*) AS n,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY station), 2) AS percent
FROM paired
GROUP BY station, sector_deg, speed_class
ORDER BY station, sector_deg, speed_class""",
        x="sector_deg", y="percent", colour="speed_class", kind="rose"),
    Example(
        "Data recovery by month",
        "For each channel's averages: the values present as a % of the 10-minute steps of each "
        "month between the station's first and last reading in the snapshot.",
        """-- Data recovery by month (10-minute steps; each station's first to last reading)
WITH bounds AS (
    SELECT station, min(time) AS first_time, max(time) + INTERVAL 10 MINUTE AS stop
    FROM readings
    GROUP BY station
), months AS (
    SELECT b.station, m.range AS month,
           epoch(least(m.range + INTERVAL 1 MONTH, b.stop) - greatest(m.range, b.first_time)) / 600 AS steps
    FROM bounds b, range(date_trunc('month', b.first_time), b.stop, INTERVAL 1 MONTH) m
)
SELECT r.station,
       m.month,
       r.channel,
       count(*) AS n_values,
       round(100.0 * count(*) / any_value(m.steps), 1) AS recovery_pct
FROM readings r
JOIN months m ON m.station = r.station AND m.month = date_trunc('month', r.time)
WHERE r.statistic = 'avg'
GROUP BY ALL
ORDER BY r.station, r.channel, m.month""",
        x="month", y="recovery_pct", colour="channel", kind="bar"),
    Example(
        "Ratio of paired anemometers",
        "The daily mean ratio of each two anemometers at one height of a station (concurrent "
        "values above 3 m/s): a drift or an iced cup shows as a step away from 1.",
        """-- Daily ratio of the anemometers at the same height
WITH cups AS (
    SELECT station, time, height_m, channel, value
    FROM readings
    WHERE measurement_type = 'wind_speed' AND statistic = 'avg' AND value > 3
)
SELECT date_trunc('day', a.time) AS day,
       a.station,
       a.channel || ' / ' || b.channel AS pair,
       round(avg(a.value / b.value), 4) AS mean_ratio,
       count(*) AS n_pairs
FROM cups a
JOIN cups b ON a.station = b.station AND a.height_m = b.height_m AND a.time = b.time
           AND a.channel < b.channel
GROUP BY ALL
ORDER BY pair, day""",
        x="day", y="mean_ratio", colour="pair", kind="line"),
    Example(
        "Channels in the snapshot",
        "Each channel once: type, height, boom, statistic, unit, how many values and from when to when.",
        "SELECT * FROM channels",
        x="channel", y="n_values", colour="station", kind="bar"),
)

#: Examples by name.
BY_NAME = {e.name: e for e in EXAMPLES}
