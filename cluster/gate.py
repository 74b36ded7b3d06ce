"""A login for a web app that has none (optuna-dashboard), the way Jupyter does it: a random token in the URL
printed at start (`?token=...`), exchanged on first use for an HttpOnly cookie and dropped from the address
bar; `Authorization: token ...` for scripts. Anything else gets 403. The request log never shows the token.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from http.cookies import CookieError, SimpleCookie
from socketserver import ThreadingMixIn
from urllib.parse import parse_qsl, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .settings import redact_url

COOKIE = "conductor_dashboard"
FORBIDDEN = b"403 forbidden: open the URL with ?token=... that `conductor dashboard` printed\n"


class TokenGate:
    """WSGI middleware in front of `app`; `token` is the only key (default: a fresh random one)."""

    def __init__(self, app, token: str | None = None):
        self.app = app
        self.token = token or secrets.token_urlsafe(32)
        # the cookie holds a value derived from the token, not the token itself
        self._cookie = hmac.new(self.token.encode(), b"cookie", hashlib.sha256).hexdigest()

    def __call__(self, environ, start_response):
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and _same(given[-1], self.token):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "/") + (f"?{rest}" if rest else "")
            start_response("302 Found", [("Location", location), ("Cache-Control", "no-store"), (
                "Set-Cookie", f"{COOKIE}={self._cookie}; HttpOnly; SameSite=Strict; Path=/")])
            return [b""]
        if self._has_cookie(environ) or _same(_header_token(environ), self.token):
            return self.app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", str(len(FORBIDDEN)))])
        return [FORBIDDEN]

    def _has_cookie(self, environ) -> bool:
        try:
            morsel = SimpleCookie(environ.get("HTTP_COOKIE", "")).get(COOKIE)
        except CookieError:
            return False
        return morsel is not None and _same(morsel.value, self._cookie)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _header_token(environ) -> str | None:
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() in ("token", "bearer") else None


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        sys.stderr.write(redact_url(f"{self.address_string()} - {format % args}") + "\n")


def serve(app, host: str, port: int):
    """A threaded WSGI server on host:port (not started: call serve_forever)."""
    return make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")
