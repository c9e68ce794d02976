"""The ASGI server: APIv3 verification and signing, operations, sandbox control, dashboard."""
