-- `homeserver port-db` (SQLite -> PostgreSQL): how far each table has been copied, so an
-- interrupted port resumes where it stopped. Written only in the target database; each batch of
-- rows and its progress row commit in one transaction (a resumed port never copies a row twice).
CREATE TABLE port_db_progress (
    table_name TEXT PRIMARY KEY,
    last_rowid BIGINT NOT NULL,
    rows_copied BIGINT NOT NULL,
    done BOOLEAN NOT NULL
);
