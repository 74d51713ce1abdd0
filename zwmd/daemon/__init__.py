"""The daemon: its lifecycle (serving), what the API asks of it (operations), local mode."""
