"""Business rules as plain Python: no HTTP, no SQL."""
