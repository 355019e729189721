-- Calibrations typed in by analysts (core.calibrations): who entered a period and when it was
-- last changed, and periods that end after they start (as logger, sensor and channel_mapping).
-- source: 'iea43' (Task 43 import) or 'manual' (Calibrations page / CLI).

ALTER TABLE calibration ADD COLUMN entered_by text NOT NULL DEFAULT '';
ALTER TABLE calibration ADD COLUMN updated_at timestamptz;
ALTER TABLE calibration ADD CONSTRAINT calibration_period_check
    CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from);
