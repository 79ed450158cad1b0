"""Storage: the Database protocol, its SQLite and PostgreSQL engines, migrations and stores."""
