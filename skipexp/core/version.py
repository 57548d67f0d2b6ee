"""The version of skipexp, which meta.json records (pyproject.toml holds the same)."""
VERSION = "0.1.0"
