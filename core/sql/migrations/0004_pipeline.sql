-- Ingest pipeline: archives, inbox tracking, routing by logger header.

-- An archive (.zip, .gz) is kept like any file; each member becomes a source_file of its
-- own with parent_id pointing at the archive, whose status becomes 'unpacked'.
ALTER TABLE source_file ADD COLUMN parent_id integer REFERENCES source_file;
ALTER TABLE source_file DROP CONSTRAINT source_file_status_check;
ALTER TABLE source_file ADD CONSTRAINT source_file_status_check CHECK (
    status IN ('queued', 'importing', 'imported', 'failed', 'duplicate', 'needs station', 'unpacked'));
CREATE INDEX source_file_parent_idx ON source_file (parent_id) WHERE parent_id IS NOT NULL;

-- What the inbox watcher has seen: a path is received again only when its size or
-- modification time changed (loggers append to the same file) and it has settled.
CREATE TABLE inbox_file (
    path            text PRIMARY KEY,
    size_bytes      bigint NOT NULL,
    mtime           timestamptz NOT NULL,
    source_file_id  integer REFERENCES source_file ON DELETE SET NULL,
    seen_at         timestamptz NOT NULL DEFAULT now()
);

-- How one logger's delimited text files are laid out (core.formats.generic.GenericMapping
-- as JSON): header row, delimiter, timestamp column(s) and format, time zone, missing codes.
ALTER TABLE logger ADD COLUMN file_mapping jsonb;
