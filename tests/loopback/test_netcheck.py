"""The connectivity check against real servers on 127.0.0.1: the room server, coturn
(started here with its own configuration), and small fake STUN/TURN servers for what
coturn cannot be made to do on demand (a symmetric NAT, a stale nonce, silence).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from aioice import stun
from aioice.turn import make_integrity_key
from websockets.asyncio.server import serve
from websockets.http11 import Response

from desktop_call import netcheck
from desktop_call.call.ice import IceConfig, IceServer
from desktop_call.netcheck import CheckResult, CheckTimeouts, run_check
from desktop_call.server import RoomServer, ServerConfig
from desktop_call.server.rooms import Registry, RegistryConfig
from desktop_call.signaling.ids import InvalidCallTarget

pytestmark = pytest.mark.loopback

FAST = CheckTimeouts(server=3.0, stun=1.5, turn=3.0, total=6.0)
SECRET = "coturn-test-secret"
REALM = "desktop-call.test"


# ------------------------------------------------------------------- helpers


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


def rest_credentials(secret: str, user: str = "alice", ttl: float = 600) -> tuple[str, str]:
    """coturn's use-auth-secret: username "<expiry>:<user>", password HMAC-SHA1 in base64."""
    username = f"{int(time.time() + ttl)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def sockets_of_this_process() -> set[tuple[Any, ...]]:
    return {
        (c.type, c.laddr, c.raddr, c.status) for c in psutil.Process().net_connections(kind="inet")
    }


async def stun_answer(address: tuple[str, int], limit: float) -> bool:
    """Send a Binding request every 50 ms until ``address`` answers (True) or ``limit``."""
    loop = asyncio.get_running_loop()
    answered = asyncio.Event()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            answered.set()

    transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=address)
    try:
        async with asyncio.timeout(limit):
            while not answered.is_set():
                request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
                transport.sendto(bytes(request))
                try:
                    async with asyncio.timeout(0.05):
                        await answered.wait()
                except TimeoutError:
                    pass
        return True
    except TimeoutError:
        return False
    finally:
        transport.close()


async def tcp_accepts(address: tuple[str, int], limit: float) -> None:
    async with asyncio.timeout(limit):
        while True:
            try:
                _, writer = await asyncio.open_connection(*address)
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)  # not listening yet: nothing to await but time
                continue
            writer.close()
            await writer.wait_closed()
            return


@dataclass
class Coturn:
    port: int
    log: Path

    def credentials(self, user: str = "alice") -> tuple[str, str]:
        return rest_credentials(SECRET, user)

    def ice(
        self, *urls: str, username: str | None = None, credential: str | None = None
    ) -> IceConfig:
        if username is None:
            username, credential = self.credentials()
        servers = tuple(
            IceServer(url.format(port=self.port), username, credential)
            if url.startswith("turn")
            else IceServer(url.format(port=self.port))
            for url in urls
        )
        return IceConfig(servers=servers)


@pytest.fixture
async def coturn(tmp_path) -> AsyncIterator[Coturn]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn is not installed (turnserver not on PATH; apt-get install coturn)")
    port = free_port()
    log = tmp_path / "coturn.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *[
                binary,
                "-n",  # no configuration file: only these options
                "--listening-ip=127.0.0.1",
                f"--listening-port={port}",
                "--relay-ip=127.0.0.1",
                "--use-auth-secret",
                f"--static-auth-secret={SECRET}",
                f"--realm={REALM}",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
                "--log-file=stdout",
                f"--pidfile={tmp_path / 'coturn.pid'}",
                f"--userdb={tmp_path / 'coturn.db'}",
            ],
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        if not await stun_answer(("127.0.0.1", port), 10.0):
            raise AssertionError(f"coturn did not answer STUN:\n{log.read_text()[-3000:]}")
        await tcp_accepts(("127.0.0.1", port), 5.0)
        yield Coturn(port, log)
    finally:
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def server() -> AsyncIterator[RoomServer]:
    async with RoomServer(ServerConfig(port=0)) as srv:
        yield srv


class FakeStun(asyncio.DatagramProtocol):
    """Answers Binding requests with a chosen mapped address (a NAT, as seen from here)."""

    def __init__(self, mapped: tuple[str, int] | None = None) -> None:
        self.mapped = mapped
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = stun.parse_message(data)
        self.requests += 1
        response = stun.Message(
            request.message_method, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = self.mapped or addr
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


class FakeTurn(asyncio.DatagramProtocol):
    """A TURN server over UDP that calls the nonce stale ``stale`` times after the 401."""

    USER, PASSWORD, REALM = "bob", "pw", "fake.test"
    RELAYED = ("127.0.0.1", 61234)

    def __init__(self, stale: int) -> None:
        self.stale = stale
        self.nonce = b"nonce-0"
        self.seen: list[tuple[str, str]] = []  # (method, what we answered)
        self.transport: asyncio.DatagramTransport | None = None
        self.key = make_integrity_key(self.USER, self.REALM, self.PASSWORD)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def _error(self, request: stun.Message, code: int, reason: str) -> stun.Message:
        response = stun.Message(
            request.message_method, stun.Class.ERROR, transaction_id=request.transaction_id
        )
        response.attributes["ERROR-CODE"] = (code, reason)
        response.attributes["REALM"] = self.REALM
        response.attributes["NONCE"] = self.nonce
        return response

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = stun.parse_message(data)
        method = request.message_method.name
        if "USERNAME" not in request.attributes or not request.check_message_integrity(self.key):
            response, answer = self._error(request, 401, "Unauthorized"), "401"
        elif request.attributes.get("NONCE") != self.nonce or self.stale > 0:
            if request.attributes.get("NONCE") == self.nonce:
                self.stale -= 1
                self.nonce = f"nonce-{len(self.seen)}".encode()
            response, answer = self._error(request, 438, "Stale Nonce"), "438"
        else:
            response = stun.Message(
                request.message_method, stun.Class.RESPONSE, transaction_id=request.transaction_id
            )
            if request.message_method == stun.Method.ALLOCATE:
                response.attributes["XOR-RELAYED-ADDRESS"] = self.RELAYED
                response.attributes["XOR-MAPPED-ADDRESS"] = addr
                response.attributes["LIFETIME"] = 60
            else:
                response.attributes["LIFETIME"] = 0
            response.add_message_integrity(self.key)
            answer = "ok"
        self.seen.append((method, answer))
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


async def udp_server(factory: Callable[[], asyncio.DatagramProtocol]) -> tuple[Any, Any, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(factory, local_addr=("127.0.0.1", 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


def texts(result: CheckResult) -> str:
    return "\n".join(f"{f.level}: {f.text}" for f in result.findings)


# --------------------------------------------------------------- the green path


async def test_room_server_and_coturn_all_green(server, coturn):
    ice = coturn.ice(
        "stun:127.0.0.1:{port}",
        "turn:127.0.0.1:{port}?transport=udp",
        "turn:127.0.0.1:{port}?transport=tcp",
    )
    seen: list[tuple[str, str]] = []
    before = sockets_of_this_process()
    result = await run_check(
        server.url, ice, timeouts=FAST, progress=lambda item: seen.append((item.label, item.state))
    )
    assert result.status == "ok", texts(result)
    assert result.calls_can_work
    assert "Calls on this network will connect directly in most cases" in result.headline

    assert result.server.state == "ok"
    assert result.server.error is None
    assert result.server.welcome_ms is not None and result.server.welcome_ms > 0
    assert server.registry.rooms == 0  # the test room was left

    (stun_item,) = result.stun
    assert stun_item.state == "ok", stun_item.message
    local_port = stun_item.local_address.rsplit(":", 1)[1]
    assert stun_item.mapped_address == f"127.0.0.1:{local_port}"  # loopback: no NAT
    assert result.nat.behind_nat is False
    assert "not behind NAT" in result.nat.message
    assert result.udp.status == "works"

    udp_turn, tcp_turn = result.turn
    for item, transport in ((udp_turn, "udp"), (tcp_turn, "tcp")):
        assert item.state == "ok", item.message
        assert item.transport == transport
        host, port = item.relayed_address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert item.mapped_address.startswith("127.0.0.1:")

    # progress: every item was reported running, then done
    for item in (result.server, stun_item, udp_turn, tcp_turn):
        assert (item.label, "running") in seen
        assert (item.label, "ok") in seen
    # every socket the check opened is closed again (the server's side may lag a moment)
    leftover = {
        s
        for s in sockets_of_this_process() - before
        if s[1].port != int(server.url.rsplit(":")[-1])
    }
    assert not leftover
    json.dumps(result.to_dict())  # the report is JSON as is


# ------------------------------------------------------------------- failures


async def test_wrong_turn_credentials_are_explained_as_401(server, coturn):
    username, _ = coturn.credentials()
    ice = coturn.ice(
        "stun:127.0.0.1:{port}",
        "turn:127.0.0.1:{port}?transport=udp",
        username=username,
        credential="not-the-password",
    )
    result = await run_check(server.url, ice, timeouts=FAST)
    (turn,) = result.turn
    assert turn.state == "failed"
    assert turn.error == "unauthorized" and turn.error_code == 401
    assert turn.answered
    # direct calls still work: a warning, not a failure
    assert result.status == "warning" and result.calls_can_work
    assert result.headline.startswith("Your TURN credentials were refused (401)")
    assert "check the TURN username and credential" in result.headline

    relay_only = IceConfig(servers=ice.servers, relay_only=True)
    result = await run_check(server.url, relay_only, timeouts=FAST)
    assert result.status == "fail" and not result.calls_can_work
    assert "Relay-only is on, but the TURN server calls use does not work" in result.headline


async def test_turn_without_credentials_on_the_server_side_is_not_a_crash(coturn):
    # an issued entry with no credential: refused before any packet is sent
    ice = IceConfig(servers=(IceServer(f"turn:127.0.0.1:{coturn.port}"),))
    result = await run_check(None, ice, timeouts=FAST)
    assert result.turn[0].error == "no-credentials"


async def test_no_server_listening_is_connection_refused():
    port = free_port()  # closed again: nothing listens there
    result = await run_check(f"ws://127.0.0.1:{port}", IceConfig(servers=()), timeouts=FAST)
    assert result.server.state == "failed"
    assert result.server.error == "refused"
    assert not result.calls_can_work and result.status == "fail"
    assert result.headline == (
        f"The room server could not be reached: connection refused at 127.0.0.1:{port} "
        "(nothing listens there: is the server running, and is the port right?)."
    )


async def test_a_silent_udp_port_as_stun_gets_the_no_answer_explanation(server):
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = silent.get_extra_info("sockname")[1]
    try:
        ice = IceConfig(servers=(IceServer(f"stun:127.0.0.1:{port}"),))
        started = loop.time()
        result = await run_check(server.url, ice, timeouts=FAST)
        elapsed = loop.time() - started
    finally:
        silent.close()
    (item,) = result.stun
    assert item.state == "failed" and item.error == "timeout"
    assert item.message.startswith("no answer within 1.5 s")
    assert not item.udp_answered
    # one silent host while TCP works: UDP is probably blocked, said with the doubt
    assert result.udp.status == "blocked" and not result.udp.certain
    assert "probably blocks UDP" in result.headline
    assert "none is configured" in result.headline
    assert not result.calls_can_work
    assert elapsed < FAST.stun + 1.0  # bounded by the STUN timeout, not aioice's 40 s


async def test_an_unresolvable_name_is_a_dns_error():
    ice = IceConfig(servers=(IceServer("stun:stun.check.invalid:3478"),))
    result = await run_check("ws://room.check.invalid:8787", ice, timeouts=FAST)
    assert result.server.error in ("dns", "dns-timeout")
    assert "room.check.invalid" in result.server.message
    assert result.stun[0].error in ("dns", "dns-timeout")


async def test_http_refusal_is_explained_with_its_status():
    def forbid(connection: Any, request: Any) -> Response:
        return connection.respond(403, "no\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=forbid) as srv:
        port = srv.sockets[0].getsockname()[1]
        result = await run_check(f"ws://127.0.0.1:{port}", IceConfig(servers=()), timeouts=FAST)
    assert result.server.error == "http-403"
    assert "answered HTTP 403" in result.server.message


async def test_something_that_is_not_a_websocket_server():
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(hello, "127.0.0.1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        result = await run_check(f"ws://127.0.0.1:{port}", IceConfig(servers=()), timeouts=FAST)
    assert result.server.error in ("not-websocket", "closed")
    assert f"127.0.0.1:{port}" in result.server.message


async def test_a_token_the_server_wants(tmp_path):
    async with RoomServer(ServerConfig(port=0, token="s3cret")) as srv:
        missing = await run_check(srv.url, IceConfig(servers=()), timeouts=FAST)
        wrong = await run_check(srv.url, IceConfig(servers=()), token="nope", timeouts=FAST)
        right = await run_check(srv.url, IceConfig(servers=()), token="s3cret", timeouts=FAST)
    assert missing.server.error == "refused-join"
    assert "wants a token" in missing.server.message
    assert wrong.server.error == "refused-join"
    assert "refused the token" in wrong.server.message
    assert right.server.state == "ok"


async def test_an_untrusted_tls_certificate(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    config = ServerConfig(
        port=0, certfile=str(tmp_path / "cert.pem"), keyfile=str(tmp_path / "key.pem")
    )
    async with RoomServer(config) as srv:
        url = srv.url
        refused = await run_check(url, IceConfig(servers=()), timeouts=FAST)
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        accepted = await run_check(url, IceConfig(servers=()), timeouts=FAST, ssl=trusted)
        plain = await run_check(
            url.replace("wss://", "ws://"), IceConfig(servers=()), timeouts=FAST
        )
    assert url.startswith("wss://")
    assert refused.server.error == "tls-certificate"
    assert "TLS certificate was refused" in refused.server.message
    assert accepted.server.state == "ok"
    assert plain.server.state == "failed"  # ws:// to a TLS server
    assert "use wss://" in plain.server.message, plain.server.message


# ------------------------------------------------------------ server-issued ICE


def issuing_server(urls: tuple[str, ...], secret: str = SECRET) -> RoomServer:
    try:
        config = ServerConfig(port=0, turn_secret=secret, turn_urls=urls)
    except TypeError:
        pytest.skip("this room server does not issue TURN credentials (no turn_secret)")
    return RoomServer(config)


async def test_servers_issued_in_welcome_are_tested(coturn):
    urls = (f"stun:127.0.0.1:{coturn.port}", f"turn:127.0.0.1:{coturn.port}?transport=udp")
    async with issuing_server(urls) as srv:
        result = await run_check(srv.url, IceConfig(servers=()), timeouts=FAST)
    assert [s["url"] for s in result.server.ice_servers] == list(urls)
    assert all("credential" not in s for s in result.server.ice_servers)
    (stun_item,) = result.stun
    (turn,) = result.turn
    assert stun_item.source == turn.source == "room server"
    assert turn.state == "ok", turn.message
    assert turn.username and turn.username.endswith(":" + turn.username.split(":", 1)[1])
    assert result.calls_can_work and result.status == "ok", texts(result)


async def test_issued_credentials_the_turn_server_refuses(coturn):
    urls = (f"turn:127.0.0.1:{coturn.port}?transport=udp",)
    async with issuing_server(urls, secret="another-secret") as srv:
        result = await run_check(srv.url, IceConfig(servers=()), timeouts=FAST)
    (turn,) = result.turn
    assert turn.error == "unauthorized"
    assert "the room server issued them" in turn.message
    assert "(issued by the room server)" in texts(result)


async def test_a_malformed_ice_servers_field_does_not_break_the_check():
    registry = Registry(RegistryConfig(), welcome_extra=lambda room, peer: {"ice_servers": 7})
    async with RoomServer(ServerConfig(port=0), registry=registry) as srv:
        result = await run_check(srv.url, IceConfig(servers=()), timeouts=FAST)
    assert result.server.state == "ok"
    assert result.server.ice_servers == []
    assert result.stun == [] and result.turn == []


async def test_an_issued_url_that_is_configured_too_is_tested_once_with_your_credentials(coturn):
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    async with issuing_server((url,), secret="another-secret") as srv:
        result = await run_check(srv.url, coturn.ice(url), timeouts=FAST)
    (turn,) = result.turn  # as calls merge them: yours wins, the issued copy is dropped
    assert turn.source == "settings" and turn.state == "ok", turn.message
    assert [s["url"] for s in result.server.ice_servers] == [url]


# ------------------------------------------------------------------ fake servers


async def test_stale_nonce_is_retried_once(server):
    transport, fake, port = await udp_server(lambda: FakeTurn(stale=1))
    try:
        ice = IceConfig(
            servers=(IceServer(f"turn:127.0.0.1:{port}", FakeTurn.USER, FakeTurn.PASSWORD),)
        )
        result = await run_check(None, ice, timeouts=FAST)
    finally:
        transport.close()
    (turn,) = result.turn
    assert turn.state == "ok", turn.message
    assert turn.relayed_address == "127.0.0.1:61234"
    assert fake.seen == [
        ("ALLOCATE", "401"),
        ("ALLOCATE", "438"),
        ("ALLOCATE", "ok"),
        ("REFRESH", "ok"),  # the allocation is deleted
    ]


async def test_a_nonce_that_stays_stale_is_explained():
    transport, _, port = await udp_server(lambda: FakeTurn(stale=10))
    try:
        ice = IceConfig(
            servers=(IceServer(f"turn:127.0.0.1:{port}", FakeTurn.USER, FakeTurn.PASSWORD),)
        )
        result = await run_check(None, ice, timeouts=FAST)
    finally:
        transport.close()
    assert result.turn[0].error == "stale-nonce"
    assert result.turn[0].error_code == 438


@pytest.mark.parametrize(
    ("mapped", "mapping", "level", "words"),
    [
        ([("203.0.113.7", 40000)] * 2, "endpoint-independent", "ok", "connect directly"),
        (
            [("203.0.113.7", 40000), ("203.0.113.7", 40001)],
            "endpoint-dependent",
            "warning",
            "symmetric NAT",
        ),
    ],
)
async def test_two_stun_servers_tell_the_nat_mapping(server, mapped, mapping, level, words):
    fakes = [await udp_server(lambda m=m: FakeStun(m)) for m in mapped]
    try:
        ice = IceConfig(servers=tuple(IceServer(f"stun:127.0.0.1:{p}") for _, _, p in fakes))
        result = await run_check(server.url, ice, timeouts=FAST)
    finally:
        for transport, _, _ in fakes:
            transport.close()
    assert result.nat.behind_nat is True
    assert result.nat.mapping == mapping
    assert result.nat.public_addresses == ["203.0.113.7"]
    assert result.findings[0].level == level
    assert words in result.findings[0].text
    # both answers came to the same local socket
    assert len({s.local_address for s in result.stun}) == 1


async def test_the_first_stun_server_is_the_one_calls_use():
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    transport, _, port = await udp_server(FakeStun)
    try:
        silent_port = silent.get_extra_info("sockname")[1]
        ice = IceConfig(
            servers=(
                IceServer(f"stun:127.0.0.1:{silent_port}"),
                IceServer(f"stun:127.0.0.1:{port}"),
            )
        )
        result = await run_check(None, ice, timeouts=FAST)
    finally:
        silent.close()
        transport.close()
    assert result.udp.status == "works"
    assert (
        f"Calls use only the first STUN server. stun:127.0.0.1:{silent_port} failed and "
        f"stun:127.0.0.1:{port} works: put it first in your list."
    ) in texts(result)


# ------------------------------------------------------------ cancel, bounds, input


async def test_cancelling_closes_every_socket_at_once():
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = silent.get_extra_info("sockname")[1]
    try:
        before = sockets_of_this_process()
        running = asyncio.Event()

        def progress(item: Any) -> None:
            if item.state == "running":
                running.set()

        ice = IceConfig(
            servers=(
                IceServer(f"stun:127.0.0.1:{port}"),
                IceServer(f"turn:127.0.0.1:{port}", "u", "p"),
            )
        )
        slow = CheckTimeouts(server=30, stun=30, turn=30, total=30)
        task = asyncio.create_task(run_check(None, ice, timeouts=slow, progress=progress))
        async with asyncio.timeout(5):
            await running.wait()
        assert sockets_of_this_process() - before  # the check has its sockets open
        started = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.time() - started < 0.5
        assert sockets_of_this_process() - before == set()
    finally:
        silent.close()


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="stun timeout must be a positive number"):
        CheckTimeouts(stun=0)
    with pytest.raises(ValueError, match="total timeout"):
        CheckTimeouts(total=float("nan"))
    with pytest.raises(InvalidCallTarget, match="not a server address"):
        asyncio.run(run_check("ftp://example.org", IceConfig(servers=())))
    with pytest.raises(TypeError, match="IceConfig"):
        asyncio.run(run_check(None, "stun:x"))  # type: ignore[arg-type]


def test_the_check_does_not_import_qt():
    code = (
        "import sys, desktop_call.netcheck\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'PySide6', 'qasync'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------ CLI


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "desktop_call",
        "--check",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


async def test_cli_green_exits_0_and_prints_the_summary(server, coturn):
    username, credential = coturn.credentials()
    code, out, err = await run_cli(
        "--server",
        server.url,
        "--ice-servers",
        f"stun:127.0.0.1:{coturn.port},turn:127.0.0.1:{coturn.port}?transport=tcp",
        "--turn-username",
        username,
        "--turn-credential",
        credential,
    )
    assert code == netcheck.EXIT_OK, err + out
    assert out.startswith("Connectivity check: calls can work (ok).")
    assert "connect directly in most cases" in out
    assert "relayed address 127.0.0.1:" in out
    assert credential not in out


async def test_cli_report_to_stdout_and_exit_1_when_calls_cannot_work():
    port = free_port()
    code, out, err = await run_cli(
        "--server", f"ws://127.0.0.1:{port}", "--ice-servers", "none", "--report", "-"
    )
    assert code == netcheck.EXIT_CANNOT_WORK
    report = json.loads(out)  # stdout is the JSON alone; the summary went to stderr
    assert report["server"]["error"] == "refused"
    assert report["calls_can_work"] is False
    assert "connection refused" in err


async def test_cli_bad_input_exits_64_with_a_message():
    code, _, err = await run_cli("--ice-servers", "turn:example.org")
    assert code == netcheck.EXIT_USAGE
    assert "needs a username and a credential" in err
    code, _, err = await run_cli("--join", "7k3m-q9vd-x2ha")
    assert code == 2  # argparse: --check runs alone
    assert "--check runs alone" in err


async def test_the_total_time_limit_bounds_every_step():
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = silent.get_extra_info("sockname")[1]
    try:
        ice = IceConfig(
            servers=(
                IceServer(f"stun:127.0.0.1:{port}"),
                IceServer(f"turn:127.0.0.1:{port}", "u", "p"),
            )
        )
        started = loop.time()
        result = await run_check(
            None, ice, timeouts=CheckTimeouts(server=30, stun=30, turn=30, total=1.0)
        )
        elapsed = loop.time() - started
    finally:
        silent.close()
    assert elapsed < 2.0
    assert [s.error for s in (*result.stun, *result.turn)] == ["timeout", "timeout"]
    assert result.stun[0].message.startswith("no answer within 1 s")
