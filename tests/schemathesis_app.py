"""Run a manage.py command (for .ci/schemathesis: `runserver`) with every outbound connection confined to loopback.

Schemathesis invents `serverUrl`s and the app then syncs them. The service's own address policy already
refuses internal addresses at create, but a public name would be resolved and connected to where DNS works
(CI runners), so this process also refuses, at the socket layer, every DNS lookup of a name other than
localhost and every TCP connect to a non-loopback address, like the test suite's guard in tests/conftest.py.
Each refusal is logged on stderr as `outbound guard: refused ...` (a refused sync just fails, fast).

    .venv/bin/python -m tests.schemathesis_app runserver 127.0.0.1:8001 --noreload
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _refuse(message: str) -> None:
    print(f"outbound guard: refused {message}", file=sys.stderr, flush=True)


def _check_connect(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    host = str(address[0])
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        _refuse(f"connect to unresolved host {host!r}")
        raise ConnectionRefusedError(f"outbound guard: connect to {host!r} refused") from None
    mapped = getattr(ip, "ipv4_mapped", None)
    if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
        _refuse(f"connect to {host}")
        raise ConnectionRefusedError(f"outbound guard: connect to non-loopback {host} refused")


def _connect(self: socket.socket, address: Any) -> None:
    _check_connect(self, address)
    return _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check_connect(self, address)
    return _real_connect_ex(self, address)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in _LOOPBACK_NAMES:
        try:
            ipaddress.ip_address(str(name).split("%")[0])
        except ValueError:
            _refuse(f"DNS lookup of {name!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"outbound guard: DNS lookup of {name!r} refused") from None
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo


def main(argv: list[str]) -> None:
    install()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
