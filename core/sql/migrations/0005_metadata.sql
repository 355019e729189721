-- Station metadata: column-name conventions and IEA Task 43 documents (core.metadata, core.iea43).
--
-- `source` tells where a metadata row came from: '' = created in StationManager (by an import
-- of data or by a person), 'conventions' = guessed from a column name, 'iea43' = an IEA Task 43
-- WRA data model document. Importing a document again replaces exactly the 'iea43' rows of its
-- stations, so a re-import is a no-op and an edited document updates what it describes.

ALTER TABLE logger ADD COLUMN source text NOT NULL DEFAULT '';

ALTER TABLE measurement_point ADD COLUMN source text NOT NULL DEFAULT '';
-- The Task 43 measurement_type_id as the document gives it (measurement_type holds
-- StationManager's smaller vocabulary, e.g. 'voltage' -> 'battery_voltage').
ALTER TABLE measurement_point ADD COLUMN iea43_type text;
-- ground_level, mean_sea_level, ... and magnetic_north, true_north, grid_north ('' = not stated).
ALTER TABLE measurement_point ADD COLUMN height_reference text NOT NULL DEFAULT '';
ALTER TABLE measurement_point ADD COLUMN orientation_reference text NOT NULL DEFAULT '';

-- Task 43 statistic types beyond the ones files state.
ALTER TABLE channel DROP CONSTRAINT channel_statistic_check;
ALTER TABLE channel ADD CONSTRAINT channel_statistic_check CHECK (statistic IN (
    'avg', 'sd', 'min', 'max', 'gust', 'count', 'sample', 'sum', 'median', 'mode', 'range',
    'ti', 'ti30sec', 'availability', 'quality', 'text', 'unknown'));

-- A sensor installed at a measurement point over [valid_from, valid_to).
CREATE TABLE sensor (
    id                   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    measurement_point_id integer NOT NULL REFERENCES measurement_point ON DELETE CASCADE,
    oem                  text NOT NULL DEFAULT '',
    model                text NOT NULL DEFAULT '',
    serial_number        text NOT NULL DEFAULT '',
    sensor_type          text NOT NULL DEFAULT '',
    classification       text NOT NULL DEFAULT '',
    is_heated            boolean,
    valid_from           timestamptz,
    valid_to             timestamptz,
    notes                text NOT NULL DEFAULT '',
    source               text NOT NULL DEFAULT '',
    CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from)
);
CREATE INDEX sensor_point_idx ON sensor (measurement_point_id, valid_from);

ALTER TABLE calibration ADD COLUMN source text NOT NULL DEFAULT '';
-- The sensor whose certificate gave cal_slope/cal_offset (NULL: no certificate, then
-- cal_slope/cal_offset equal the logger's values and recalibration changes nothing).
ALTER TABLE calibration ADD COLUMN sensor_id integer REFERENCES sensor ON DELETE SET NULL;
CREATE INDEX calibration_point_idx ON calibration (measurement_point_id, valid_from);

-- Which measurement point (and statistic) a logger column recorded over [valid_from, valid_to):
-- a column may move to another sensor when a mast is rewired. channel.measurement_point_id
-- and channel.statistic hold the latest mapping; this table keeps the history.
-- The importer refuses overlapping periods for one column.
CREATE TABLE channel_mapping (
    id                   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id           integer NOT NULL REFERENCES channel ON DELETE CASCADE,
    measurement_point_id integer NOT NULL REFERENCES measurement_point ON DELETE CASCADE,
    statistic            text NOT NULL DEFAULT 'unknown',
    unit                 text NOT NULL DEFAULT '',
    is_ignored           boolean NOT NULL DEFAULT false,
    valid_from           timestamptz,
    valid_to             timestamptz,
    source               text NOT NULL DEFAULT '',
    CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from)
);
CREATE INDEX channel_mapping_channel_idx ON channel_mapping (channel_id, valid_from);
CREATE INDEX channel_mapping_point_idx ON channel_mapping (measurement_point_id);

-- Unknown whether a logger stamps the end of the period (a Task 43 document may leave it
-- out): NULL, and each file's own header (else the end-of-period default) decides.
ALTER TABLE logger ALTER COLUMN timestamp_is_end DROP NOT NULL;
