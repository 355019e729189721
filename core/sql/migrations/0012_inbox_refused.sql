-- Entries of the inbox that are never read (symbolic links, hard links, pipes, the home
-- folder): the reason, shown on the Files page while the entry stays in the inbox.
ALTER TABLE inbox_file ADD COLUMN refused text;
