"""APIv3 operations, one module per product family: each handler parses, calls the domain, returns."""
