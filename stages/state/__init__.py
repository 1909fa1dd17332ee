"""State Manager: entities, their state machines and history, persisted in SQLite (port 8003)."""
