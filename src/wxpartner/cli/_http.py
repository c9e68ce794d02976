"""The control-API client the operations commands share: where the server is (flags, else
<data-dir>/connection.json), its sandbox token, and the options that say so."""

from __future__ import annotations

import functools
import json
import os
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from ._files import read_text
from ._text import sendable_token, visible

# connection.json fields the commands use as text: a hand-edited number there was a TypeError traceback
TEXT_SETTINGS = (
    "base_url",
    "sandbox_token",
    "mchid",
    "serial_no",
    "private_key_path",
    "apiv3_key",
    "tls_ca_path",
    "wechatpay_public_key_id",
    "wechatpay_public_key_path",
    "platform_certificate_serial",
    "platform_certificate_path",
)


class Target:
    """Where the server is and how to reach it: flags, else <data-dir>/connection.json (read on first
    use, so a command fails on a broken file where it first needs it)."""

    def __init__(self, obj: dict[str, Any] | None, data_dir: str, url: str, token: str) -> None:
        # '~' expanded: the shell leaves it in --data-dir=~/x and in WXPARTNER_DATA_DIR="~/x"
        self._data_dir, self._url, self._token = os.path.expanduser(data_dir), url, token
        self._http: httpx.Client | None = (obj or {}).get("http")
        self._own: httpx.Client | None = None  # made on first use, closed by close()

    @property
    def connection_path(self) -> Path:
        return Path(self._data_dir) / "connection.json"

    @cached_property
    def info(self) -> dict[str, Any]:
        path = self.connection_path
        if not path.is_file():
            return {}
        text = read_text(path, "connection settings")
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise click.ClickException(f"connection settings {path}: not JSON ({exc})") from None
        if not isinstance(found, dict):
            raise click.ClickException(f"connection settings {path}: not a JSON object")
        for name in TEXT_SETTINGS:
            if found.get(name) is not None and not isinstance(found[name], str):
                raise click.ClickException(
                    f"connection settings {path}: {name} is not a string; restart `wxpartner serve` "
                    "to write the file again"
                )
        return found

    @property
    def base_url(self) -> str:
        return str(self._url or self.info.get("base_url") or "http://127.0.0.1:8080").rstrip("/")

    @property
    def token(self) -> str:
        token = str(self._token or self.info.get("sandbox_token") or "")
        # a header value is printable ASCII: anything else was a UnicodeEncodeError traceback, or an
        # httpx error that printed the token
        if token and not sendable_token(token):
            raise click.ClickException(
                "the sandbox token is printable ASCII without spaces; copy it from sandbox_token in "
                "<data-dir>/connection.json"
            )
        return token

    def token_source(self) -> str:
        if self._token:
            return "--token or WXPARTNER_SANDBOX_TOKEN"
        return f"sandbox_token in {Path(self._data_dir) / 'connection.json'} (is that the server's data dir?)"

    def no_token(self) -> click.ClickException:
        where = Path(self._data_dir) / "connection.json"
        found = "has no sandbox_token" if where.is_file() else "does not exist"
        return click.ClickException(
            f"no sandbox token: {where} {found}; pass --data-dir with the data dir `wxpartner serve` "
            "uses, or --token"
        )

    @contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """The command's one HTTP client (its connection kept for the next request): a new client
        for each request cost 130 ms (its TLS context and CA bundle), 250 ms of each day of `bills`."""
        if self._http is not None:  # tests hand in an in-process client
            yield self._http
            return
        if self._own is None:
            self._own = self._new_client()
        yield self._own

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None

    def _new_client(self) -> httpx.Client:
        url = self.base_url
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:  # was a traceback: 'http://[::1', a port 'x'
            raise click.ClickException(f"server URL {url!r} is not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise click.ClickException(f"server URL {url!r}: expected http://HOST:PORT or https://HOST:PORT")
        return httpx.Client(base_url=url, timeout=60, verify=self._tls())

    def unreachable(self, what: str, exc: httpx.HTTPError) -> click.ClickException:
        """The transport's words, and what usually causes them."""
        text = (str(exc) or type(exc).__name__).rstrip(".")
        hint = ""
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in text:
            hint = "; for `serve --tls` pass --data-dir of that server, whose connection.json names its authority"
        elif isinstance(exc, httpx.ConnectError):
            hint = "; is `wxpartner serve` running there?"
        elif isinstance(exc, httpx.RemoteProtocolError) and self.base_url.startswith("http://"):
            hint = "; if the server was started with --tls, use https://"
        return click.ClickException(visible(f"{what}: {text}{hint}"))

    def _tls(self) -> ssl.SSLContext | bool:
        """``serve --tls``: trust the data dir's authority (connection.json names it) besides the
        system's; otherwise httpx's default verification."""
        ca = self.info.get("tls_ca_path")
        if not (isinstance(ca, str) and ca and self.base_url.startswith("https://")):
            return True
        context = httpx.create_ssl_context()
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise click.ClickException(f"connection settings: tls_ca_path {ca}: {exc}") from None
        return context

    def control(self, method: str, path: str, **kw: Any) -> Any:
        if not self.token:
            raise self.no_token()
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        try:
            with self.client() as http:
                resp = http.request(method, "/sandbox" + path, headers=headers, **kw)
        except httpx.InvalidURL as exc:  # an id or filter of 100 000 characters: was a traceback
            raise click.ClickException(
                f"cannot send that request: {exc} (a value given is too long)"
            ) from None
        except httpx.HTTPError as exc:
            raise self.unreachable(f"cannot reach {self.base_url}", exc) from None
        return self._answer(resp)

    @contextmanager
    def control_stream(self, method: str, path: str) -> Iterator[Iterator[bytes]]:
        """A control-API answer's body as it arrives (the scenario export: never all in memory);
        an error answer raises as ``control`` does."""
        if not self.token:
            raise self.no_token()
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with self.client() as http, http.stream(method, "/sandbox" + path, headers=headers) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._answer(resp)
                yield resp.iter_bytes()
        except httpx.HTTPError as exc:
            raise self.unreachable(f"cannot reach {self.base_url}", exc) from None

    def _answer(self, resp: httpx.Response) -> Any:
        """The answer's JSON; an error status raises with its code, message and detail."""
        try:
            data = resp.json()
        except ValueError:
            data = {"raw": resp.text}
        if resp.status_code >= 400:
            if not isinstance(data, dict):
                data = {"message": data}
            shown = f"{resp.status_code} {data.get('code', '')}: {data.get('message', data)}"
            if data.get("detail") is not None:  # which field, value or state, as the business API says it
                shown += f" (detail: {json.dumps(data['detail'], ensure_ascii=False, sort_keys=True)})"
            if resp.status_code == 401:  # which token was sent: a stale exported one overrides the file
                shown += f"; the token sent came from {self.token_source()}"
            # the message and detail may quote what a request carried (a value, a claimed mchid). A
            # message of several lines (a YAML error's pointer) keeps them, indented under the first,
            # so none can pass for a line of its own
            raise click.ClickException(visible(shown, lines=True).replace("\n", "\n  "))
        return data


def segment(value: str, what: str) -> str:
    """An id as one path segment of a control-API URL: percent-encoded, so that '../journal', '?' or '#'
    in it cannot reach another endpoint ('faults clear ../journal' used to clear the journal)."""
    if value in ("", ".", ".."):
        raise click.BadParameter(f"{value!r} is not {what}")
    return quote(value, safe="")


def target_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Adds --data-dir, --url, --token and --json to a command and hands it a ``Target`` as its first
    argument (``as_json`` stays a keyword argument)."""

    @functools.wraps(fn)
    def command(*args: Any, data_dir: str, url: str, token: str, **kwargs: Any) -> None:
        t = Target(click.get_current_context().obj, data_dir, url, token)
        try:
            fn(t, *args, **kwargs)
        finally:
            t.close()

    wrapped: Callable[..., None] = command
    wrapped = click.option("--json", "as_json", is_flag=True, help="print one JSON document")(wrapped)
    # the environment variables are shown: a stale one exported in the shell overrides nothing visible
    wrapped = click.option(
        "--token",
        envvar="WXPARTNER_SANDBOX_TOKEN",
        show_envvar=True,
        default="",
        help="sandbox token (default: connection.json)",
    )(wrapped)
    wrapped = click.option(
        "--url",
        envvar="WXPARTNER_URL",
        show_envvar=True,
        default="",
        help="server base URL (default: connection.json, else http://127.0.0.1:8080)",
    )(wrapped)
    return data_dir_option("holds connection.json")(wrapped)


def data_dir_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--data-dir`` (env WXPARTNER_DATA_DIR), the data dir of ``wxpartner serve``; ``what`` it gives."""
    return click.option(
        "--data-dir",
        envvar="WXPARTNER_DATA_DIR",
        show_envvar=True,
        default=".wxpartner",
        show_default=True,
        help=f"the data dir of `wxpartner serve`: {what}",
    )


def present(options: dict[str, Any]) -> dict[str, Any]:
    """The options that were given (None means not given): query parameters and bodies leave them out."""
    return {key: v for key, v in options.items() if v is not None}
