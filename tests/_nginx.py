"""A real nginx on loopback as a TLS reverse proxy, in its own prefix under a tmp dir (tests)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import trustme

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

CONF = """
daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_timeout 1s;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {root}/cert.pem;
        ssl_certificate_key {root}/cert.pem;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_connect_timeout 300ms;
            proxy_read_timeout {read_timeout};
            proxy_next_upstream off;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def nginx_proxy(
    root: Path, upstream: int, *, read_timeout: str = "5s"
) -> Iterator[tuple[str, ssl.SSLContext]]:
    """Run nginx in front of ``upstream``; yield its https URL and a context trusting it."""
    assert NGINX is not None
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(root / "cert.pem")
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(CONF.format(root=root, port=port, upstream=upstream, read_timeout=read_timeout))
    process = subprocess.Popen(
        [NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start: " + (root / "error.log").read_text())
            time.sleep(0.01)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        yield f"https://127.0.0.1:{port}", context
    finally:
        process.terminate()
        process.wait(5)
