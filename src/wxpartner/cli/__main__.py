"""``python -m wxpartner.cli``."""

from . import main

main()
