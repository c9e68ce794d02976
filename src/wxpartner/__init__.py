"""wxpartner: a faithful, stateful WeChat Pay APIv3 partner server, typed SDK and sandbox."""

__version__ = "0.1.0"
