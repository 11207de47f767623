"""PostgreSQL: the only place metadata lives. SQL stays inside this package."""
