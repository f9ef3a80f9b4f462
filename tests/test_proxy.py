"""proxy= and trust_env=, through a real forward proxy on loopback."""

from __future__ import annotations

import ssl
import sys

import aiohttp
import pytest
import trustme
from _proxy import ForwardProxy
from _scripted import TOKEN
from conftest import ClientFactory

from pcsid_async import APIStatusError, InvalidArgumentError, PcsidClient
from pcsid_async.testing import FakeClearTax

# Python 3.10's asyncio leaves an SSL transport "unclosed" when the peer closes first (its old
# sslproto never marks the app transport closed); 3.11's rewrite fixed it. Not our leak: the
# same tests hold on 3.11+ with every ResourceWarning an error.
_PY310_SSL = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function _SSLProtocolTransport.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)
pytestmark = [_PY310_SSL] if sys.version_info < (3, 11) else []


PASSWORD = "proxy-pw-SECRET-91e"


def proxy_headers_of(proxy: ForwardProxy) -> list[str]:
    """Every Proxy-* header value the proxy was given."""
    return [
        v for seen in proxy.seen for k, v in seen.headers.items() if k.lower().startswith("proxy")
    ]


class TestThroughAProxy:
    async def test_requests_go_through_the_proxy_and_the_answer_is_right(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        device, otp = fake.add_device(), fake.issue_otp()
        async with ForwardProxy() as proxy:
            client = make_client(fake.url, proxy=proxy.url)
            result = await client.renew(device, otp)
        assert result.ok
        assert result.device_id == device
        assert len(fake.ledger[device]) == 1
        [seen] = proxy.seen
        assert seen.method == "POST"
        assert seen.target == fake.url + "/onboarding/renew-pcsid"  # absolute form

    async def test_the_token_is_never_in_a_proxy_header(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        device, otp = fake.add_device(), fake.issue_otp()
        async with ForwardProxy(credentials=("user", PASSWORD)) as proxy:
            url = proxy.url.replace("http://", f"http://user:{PASSWORD}@")
            client = make_client(fake.url, proxy=url)
            assert (await client.renew(device, otp)).ok
            assert PASSWORD not in repr(client)
        values = proxy_headers_of(proxy)
        assert values  # the proxy's own credentials went to it...
        assert all(TOKEN not in v for v in values)  # ...and nothing of ours

    async def test_a_refusing_proxy_is_an_error_without_its_password(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        async with ForwardProxy(credentials=("user", "right")) as proxy:
            url = proxy.url.replace("http://", f"http://user:{PASSWORD}@")
            client = make_client(fake.url, proxy=url)
            with pytest.raises(APIStatusError) as caught:
                await client.get_status("628f37b61ed71a6638b848e4")
        assert caught.value.status_code == 407
        assert PASSWORD not in str(caught.value) + repr(caught.value)

    async def test_https_goes_through_connect_and_the_token_stays_inside_tls(
        self, make_client: ClientFactory
    ) -> None:
        ca = trustme.CA()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        async with (
            FakeClearTax(token=TOKEN, ssl_context=server_context) as https_fake,
            ForwardProxy() as proxy,
        ):
            device, otp = https_fake.add_device(), https_fake.issue_otp()
            client = make_client(https_fake.url, proxy=proxy.url, ssl=client_context)
            assert (await client.renew(device, otp)).ok
        [seen] = proxy.seen
        assert seen.method == "CONNECT"
        assert seen.target == f"127.0.0.1:{https_fake.port}"
        assert all(TOKEN not in v for v in seen.headers.values())


class TestTrustEnv:
    @pytest.fixture
    def env_proxy(self, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        return monkeypatch

    @pytest.mark.parametrize(("trust_env", "proxied"), [(False, []), (True, ["POST"])])
    async def test_the_env_proxy_is_used_only_with_trust_env(
        self,
        fake: FakeClearTax,
        make_client: ClientFactory,
        env_proxy: pytest.MonkeyPatch,
        trust_env: bool,
        proxied: list[str],
    ) -> None:
        """trust_env=False (the default) ignores HTTP_PROXY; trust_env=True honours it."""
        device, otp = fake.add_device(), fake.issue_otp()
        async with ForwardProxy() as proxy:
            env_proxy.setenv("HTTP_PROXY", proxy.url)
            env_proxy.setenv("http_proxy", proxy.url)
            kwargs = {"trust_env": True} if trust_env else {}
            assert (await make_client(fake.url, **kwargs).renew(device, otp)).ok
        assert [s.method for s in proxy.seen] == proxied


class TestArguments:
    @pytest.mark.parametrize(
        "proxy",
        [
            "ftp://u:pw-LEAK@127.0.0.1:1",
            "socks5://u:pw-LEAK@127.0.0.1:1",
            "http://u:pw-LEAK@127.0.0.1:1/path",
            "http://u:pw-LEAK@127.0.0.1:1/?q=1",
            "not a url at all pw-LEAK",
            "http://u:pw-LEAK@[::1",
            42,
        ],
    )
    def test_bad_proxy_is_refused_without_quoting_it(self, proxy: object) -> None:
        with pytest.raises(InvalidArgumentError) as caught:
            PcsidClient(TOKEN, "300000000000003", proxy=proxy)  # type: ignore[arg-type]
        assert "pw-LEAK" not in str(caught.value)

    async def test_proxy_or_trust_env_with_a_borrowed_session_is_refused(self) -> None:
        async with aiohttp.ClientSession() as session:
            for kwargs in ({"proxy": "http://127.0.0.1:3128"}, {"trust_env": True}):
                with pytest.raises(InvalidArgumentError, match="own session"):
                    PcsidClient(TOKEN, "300000000000003", session=session, **kwargs)  # type: ignore[arg-type]

    def test_trust_env_must_be_a_bool(self) -> None:
        with pytest.raises(InvalidArgumentError, match="trust_env"):
            PcsidClient(TOKEN, "300000000000003", trust_env="yes")  # type: ignore[arg-type]
