"""The console's plumbing: templates, security headers, the session cookie, CSRF and errors."""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Coroutine
from functools import cache
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from memtrace_server.core.errors import ApiError, Forbidden
from memtrace_server.core.timefmt import format_rfc3339
from memtrace_server.service.console_sessions import ConsoleUser

COOKIE = "memtrace_console"
# Double-submit token of the sign-in form: a sign-in posted from another site has no cookie
# (SameSite=Strict), so no page can sign a browser into someone else's organisation.
LOGIN_COOKIE = "memtrace_console_login"
PREFIX = "/ui"
# Scripts and styles only from this server: no inline script, no remote host.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class SignInRequired(Exception):
    """The request has no live console session: send the browser to the sign-in page."""


@cache
def environment() -> Environment:
    """The template environment (built on first use; autoescaping every template)."""
    env = Environment(
        loader=PackageLoader("memtrace_server.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["rfc3339"] = format_rfc3339
    env.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    env.filters["compact_json"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    return env


def render(
    request: Request,
    template: str,
    user: ConsoleUser | None = None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """Render a page; every page knows the user, its permissions and the CSRF token."""
    permissions = user.principal.permissions if user else frozenset()
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            user=user,
            can_write=bool(permissions & {"write", "admin"}),
            is_admin="admin" in permissions,
            csrf_token=user.csrf_token if user else "",
            base_url=str(request.base_url).rstrip("/"),
            path=request.url.path,
            **values,
        )
    )
    return HTMLResponse(html, status_code=status)


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https (directly or as a proxy says)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    return request.url.scheme == "https" or forwarded == "https"


def set_session_cookie(response: Response, request: Request, token: str, *, secure: bool) -> None:
    """The session token cookie: HttpOnly, SameSite=Strict, Secure on https or when told.

    A browser-session cookie: the idle timeout is enforced by the server.
    """
    response.set_cookie(
        COOKIE,
        token,
        path=PREFIX + "/",
        httponly=True,
        samesite="strict",
        secure=secure or is_https(request),
    )


def sign_in_page(
    request: Request, *, next_path: str, secure: bool, status: int = 200, error: str = ""
) -> HTMLResponse:
    """The sign-in form with a fresh login token, in the form and in a cookie."""
    token = secrets.token_urlsafe(24)
    response = render(
        request, "sign_in.html", status=status, next=next_path, error=error, login_token=token
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=PREFIX + "/",
        httponly=True,
        samesite="strict",
        secure=secure or is_https(request),
    )
    return response


def login_token_matches(request: Request, form: dict[str, str]) -> bool:
    """Whether the sign-in form came from our own sign-in page in this browser."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = form.get("login_token", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), given.encode())


def clear_session_cookie(response: Response) -> None:
    """Forget the session cookie."""
    response.delete_cookie(COOKIE, path=PREFIX + "/", httponly=True, samesite="strict")


async def form_of(request: Request) -> dict[str, str]:
    """A urlencoded form body as single values (the last wins for repeated names)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[-1] for name, values in parse_qs(body, keep_blank_values=True).items()}


def check_csrf(user: ConsoleUser, form: dict[str, str]) -> None:
    """403 unless the form carries this session's CSRF token."""
    if not hmac.compare_digest(form.get("csrf_token", "").encode(), user.csrf_token.encode()):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A page saying what went wrong, with the status of the error (and the user's menu)."""
    user = getattr(request.state, "console_user", None)
    return render(request, "error.html", user, status=status, status_code=status, message=message)


def sign_in_redirect(request: Request) -> RedirectResponse:
    """To the sign-in page, coming back here (only for a page read) afterwards."""
    target = f"{PREFIX}/sign-in"
    if request.method == "GET" and request.url.path != f"{PREFIX}/":
        next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target += "?next=" + quote(next_path, safe="")
    response = RedirectResponse(target, status_code=303)
    clear_session_cookie(response)
    return response


class ConsoleRoute(APIRoute):
    """A console route: errors become pages, and every response gets the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler."""
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = sign_in_redirect(request)
            except ApiError as exc:
                response = error_page(request, exc.status, exc.message)
                retry_after = getattr(exc, "retry_after", None)
                if retry_after is not None:
                    response.headers["retry-after"] = str(retry_after)
            except RequestValidationError:
                response = error_page(request, 400, "invalid request")
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return console_handler
