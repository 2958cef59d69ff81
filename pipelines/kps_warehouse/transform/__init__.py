"""The model runner: builds `sql/` in dependency order and runs its data tests."""
