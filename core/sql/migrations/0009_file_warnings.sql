-- What an import could not read in a file's header (a date, a height, a coordinate…) or had
-- to assume (e.g. whether the stamps mark the start or the end of the period), as one
-- sentence each ("line 41: …"). The readings import all the same; the warnings are shown on
-- the Files page and in `stationmanager files --json`.
ALTER TABLE source_file ADD COLUMN warnings text[] NOT NULL DEFAULT '{}';
