"""Pydantic v2 models of every request and response, shared by the server and the SDK."""
