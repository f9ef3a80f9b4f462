"""The client's constructor arguments, checked once: :func:`client_settings`.

Every argument of ``PcsidClient(...)`` is validated here, in one place and in one order, into
a frozen :class:`ClientSettings` that builds the client's :class:`Transport`. Messages name
the argument, never its value (the token, or a proxy URL with a password, is a secret).
"""

from __future__ import annotations

import ssl as ssl_module
import sys
import unicodedata
from collections.abc import Iterable

import aiohttp
import attrs
from yarl import URL

from ._bounded import check_max_response_bytes
from ._config import RetryPolicy
from ._errors import InvalidArgumentError
from ._hooks import RequestHook, ResponseHook
from ._transport import Transport
from ._validate import check_base_url, check_positive, check_token_like
from ._version import __version__

__all__ = ["ClientSettings", "check_proxy", "check_session_options", "client_settings"]


def default_user_agent() -> str:
    """``pcsid-async/<version> aiohttp/<version> python/<major.minor>``."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"pcsid-async/{__version__} aiohttp/{aiohttp.__version__} python/{py}"


def check_proxy(proxy: object) -> URL | None:
    """Validate ``proxy=``: ``None``, or an absolute http(s):// URL with a host and no path.

    The message never quotes the URL: it may carry the proxy's password.
    """
    if proxy is None:
        return None
    if not isinstance(proxy, (str, URL)):
        raise InvalidArgumentError("proxy must be a URL string or yarl.URL, or None")
    try:
        url = URL(str(proxy))
    except (ValueError, TypeError):
        raise InvalidArgumentError("proxy is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidArgumentError("proxy must be an absolute http:// or https:// URL")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise InvalidArgumentError("proxy must not have a path, query or fragment")
    return url


def check_session_options(
    session: object, proxy: object, trust_env: object, on_request: object, on_response: object
) -> URL | None:
    """Validate the client's proxy, ``trust_env`` and hooks; returns the proxy URL."""
    proxy_url = check_proxy(proxy)
    if not isinstance(trust_env, bool):
        raise InvalidArgumentError("trust_env must be True or False")
    if session is not None and (proxy_url is not None or trust_env):
        raise InvalidArgumentError("proxy and trust_env apply to the client's own session")
    for hook, name in ((on_request, "on_request"), (on_response, "on_response")):
        if hook is not None and not callable(hook):
            raise InvalidArgumentError(f"{name} must be a callable or None")
    return proxy_url


def _check_user_agent(user_agent: object) -> str:
    if user_agent is None:
        return default_user_agent()
    if (
        not isinstance(user_agent, str)
        or not user_agent.strip()
        or any(unicodedata.category(ch)[0] == "C" for ch in user_agent)
    ):
        raise InvalidArgumentError("user_agent must be a non-blank string without controls")
    return user_agent


@attrs.frozen
class ClientSettings:
    """A client's checked arguments (the token is never in the ``repr``)."""

    token: str = attrs.field(repr=False)
    vat: str
    base_url: URL
    timeout: float | None
    retry: RetryPolicy
    session: aiohttp.ClientSession | None
    max_connections: int
    rate_limit: float | None
    user_agent: str
    trace_configs: Iterable[aiohttp.TraceConfig] | None
    ssl: ssl_module.SSLContext | bool
    max_response_bytes: int
    proxy: URL | None
    trust_env: bool
    on_request: RequestHook | None
    on_response: ResponseHook | None

    def transport(self) -> Transport:
        """The client's transport (no I/O: its session is created on first use)."""
        return Transport(
            base_url=self.base_url,
            timeout=self.timeout,
            retry=self.retry,
            session=self.session,
            max_connections=self.max_connections,
            rate_limit=self.rate_limit,
            trace_configs=self.trace_configs,
            ssl=self.ssl,
            max_response_bytes=self.max_response_bytes,
            proxy=self.proxy,
            trust_env=self.trust_env,
            on_request=self.on_request,
            on_response=self.on_response,
        )


def client_settings(
    auth_token: object,
    vat: object,
    *,
    base_url: str | URL,
    timeout: object,
    retry: object,
    session: object,
    max_connections: object,
    rate_limit: object,
    user_agent: object,
    trace_configs: Iterable[aiohttp.TraceConfig] | None,
    ssl: object,
    max_response_bytes: object,
    proxy: object,
    trust_env: object,
    on_request: RequestHook | None,
    on_response: ResponseHook | None,
) -> ClientSettings:
    """Check ``PcsidClient``'s arguments (documented there), in a fixed order.

    Raises:
        InvalidArgumentError: the first bad argument.

    """
    token = check_token_like(auth_token, "auth_token")
    vat = check_token_like(vat, "vat")
    if not isinstance(ssl, (bool, ssl_module.SSLContext)):
        raise InvalidArgumentError("ssl must be an ssl.SSLContext, True or False")
    try:
        url = check_base_url(base_url, ssl=ssl)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    timeout = check_positive(timeout, "timeout", allow_none=True)
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise InvalidArgumentError("max_connections must be an integer >= 1")
    if max_connections < 1:
        raise InvalidArgumentError("max_connections must be an integer >= 1")
    rate_limit = check_positive(rate_limit, "rate_limit", allow_none=True)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidArgumentError("retry must be a RetryPolicy or None")
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise InvalidArgumentError("session must be an aiohttp.ClientSession or None")
    proxy_url = check_session_options(session, proxy, trust_env, on_request, on_response)
    agent = _check_user_agent(user_agent)
    try:
        max_bytes = check_max_response_bytes(max_response_bytes)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    return ClientSettings(
        token=token,
        vat=vat,
        base_url=url,
        timeout=timeout,
        retry=retry or RetryPolicy(),
        session=session,
        max_connections=max_connections,
        rate_limit=rate_limit,
        user_agent=agent,
        trace_configs=trace_configs,
        ssl=ssl,
        max_response_bytes=max_bytes,
        proxy=proxy_url,
        trust_env=bool(trust_env),
        on_request=on_request,
        on_response=on_response,
    )
