-- The Overview counts each station's open failing findings in its last day of data. With
-- only suggested_flag_station_idx (station, status, start_time) it read every open finding
-- of the station that began before then: 5,000+ per mast in a fleet whose checks found
-- much and nobody decided (benchmarks/fleet.py). By station and end time, it reads only
-- the findings that end within that day.
CREATE INDEX suggested_flag_open_fail_idx ON suggested_flag (station_id, end_time)
    WHERE status = 'open' AND severity = 'fail';
