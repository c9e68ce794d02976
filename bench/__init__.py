"""`make bench`: wxpartner measured against the signing floor of the same machine, side by side."""
