-- Saved queries of the Explore page (core.explore.saved): each user's own, by name; a
-- shared one is listed for everyone under its name, which no other shared query may take.
CREATE TABLE explore_query (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text NOT NULL CHECK (owner ~ '\S'),
    name        text NOT NULL CHECK (name ~ '\S' AND length(name) <= 200),
    sql         text NOT NULL CHECK (sql ~ '\S' AND length(sql) <= 100000),
    shared      boolean NOT NULL DEFAULT false,
    chart       jsonb NOT NULL DEFAULT '{}',   -- x, y, colour, kind
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, name)
);

CREATE UNIQUE INDEX explore_query_shared_name ON explore_query (lower(name)) WHERE shared;
