-- The database's own guard on values people type or documents bring: coordinates on the
-- globe, calibration slopes and offsets finite and at most 1e6 in size (NaN and Infinity
-- fail BETWEEN). core/limits.py checks them first and says which value is wrong; these
-- constraints stop any other writer.
--
-- NOT VALID: rows written before this migration are not checked, so an upgrade never fails
-- on them; once they are corrected, ALTER TABLE ... VALIDATE CONSTRAINT ... checks them too.
-- Heights and UTC offsets are left to core/limits.py: a logger file's header or column name
-- may state any, and an import must not fail on that here.

ALTER TABLE station ADD CONSTRAINT station_latitude_range CHECK (latitude BETWEEN -90 AND 90) NOT VALID;
ALTER TABLE station ADD CONSTRAINT station_longitude_range CHECK (longitude BETWEEN -180 AND 180) NOT VALID;
ALTER TABLE calibration ADD CONSTRAINT calibration_values_bounded CHECK (
    logger_slope BETWEEN -1e6 AND 1e6 AND logger_offset BETWEEN -1e6 AND 1e6
    AND cal_slope BETWEEN -1e6 AND 1e6 AND cal_offset BETWEEN -1e6 AND 1e6
) NOT VALID;
