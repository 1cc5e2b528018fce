"""TURN REST credentials end to end on 127.0.0.1: the room server issues them in
``welcome``, the signaling client parses them, the call merges them into the ICE
configuration, and (where coturn is installed) a TURN server accepts them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCIceTransportPolicy, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from websockets.asyncio.client import ClientConnection, connect

from desktop_call.call import session as session_module
from desktop_call.call.ice import (
    IceConfig,
    IceServer,
    bound_gathering,
    issued_ice_servers,
    merge_ice_servers,
    parse_ice_servers,
)
from desktop_call.call.session import CallOptions, CallSession
from desktop_call.call.signaling import Connected, SignalingClient, SignalReceived
from desktop_call.call.state import CallState
from desktop_call.server import RoomServer, ServerConfig
from desktop_call.server.__main__ import TURN_SECRET_ENV, build_parser, config_from_args
from desktop_call.server.rooms import Registry, RegistryConfig

pytestmark = pytest.mark.loopback

REPO = Path(__file__).resolve().parents[2]
SECRET = "correct horse battery staple"
TURN_URLS = ("stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp", "turns:t.example:5349")
T = 5.0
V1_WELCOME = {"type", "v", "id", "resume", "peers", "capacity"}


def rest_password(secret: str, username: str) -> str:
    """coturn's check, written out here independently of desktop_call.server.turn."""
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def turn_config(**overrides: Any) -> ServerConfig:
    fields: dict[str, Any] = {
        "port": 0,
        "turn_secret": SECRET,
        "turn_urls": TURN_URLS,
        "turn_ttl": 3600.0,
    }
    return ServerConfig(**{**fields, **overrides})


async def join(url: str, room: str = "turn-room", **fields: Any) -> tuple[ClientConnection, dict]:
    ws = await connect(f"{url}/rooms/{room}", compression=None, open_timeout=T, ping_interval=None)
    await ws.send(json.dumps({"type": "join", "v": 1, "name": "n", **fields}))
    async with asyncio.timeout(T):
        welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


def check_credentials(welcome: dict, now: float, ttl: float, secret: str = SECRET) -> None:
    """The field's shape, a valid password, and an expiry of now + ttl (to the second)."""
    stun, turn = welcome["ice_servers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp", "turns:t.example:5349"]
    expiry, label = turn["username"].split(":", 1)
    assert label == welcome["id"]
    assert int(now + ttl) == int(expiry)
    assert turn["credential"] == rest_password(secret, turn["username"])


# ------------------------------------------------------------------------ the server


async def test_welcome_carries_valid_credentials_that_expire_after_the_ttl() -> None:
    async with RoomServer(turn_config()) as server:
        before = time.time()
        ws, welcome = await join(server.url)
        after = time.time()
        assert welcome.keys() >= V1_WELCOME
        assert set(welcome) - V1_WELCOME == {"ice_servers"}
        turn = welcome["ice_servers"][1]
        expiry = int(turn["username"].split(":")[0])
        assert int(before + 3600) <= expiry <= int(after + 3600)
        assert turn["credential"] == rest_password(SECRET, turn["username"])
        assert turn["credential"] != rest_password("another secret", turn["username"])
        await ws.close()


async def test_every_welcome_has_fresh_credentials_and_a_resume_too() -> None:
    clock = [1_700_000_000.25]
    async with RoomServer(turn_config(grace=10.0), wall_clock=lambda: clock[0]) as server:
        a, first = await join(server.url, "fresh-room")
        check_credentials(first, clock[0], 3600)
        clock[0] += 100
        b, second = await join(server.url, "fresh-room")
        check_credentials(second, clock[0], 3600)
        assert first["ice_servers"][1]["username"] != second["ice_servers"][1]["username"]

        a.transport.abort()  # unclean: a's slot waits for a resume
        async with asyncio.timeout(T):
            while server.stats()["peers_in_grace"] != 1:  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.01)
        clock[0] += 250
        again, resumed = await join(server.url, "fresh-room", resume=first["resume"])
        assert resumed["id"] == first["id"]
        check_credentials(resumed, clock[0], 3600)
        assert int(resumed["ice_servers"][1]["username"].split(":")[0]) == int(clock[0] + 3600)
        await again.close()
        await b.close()


async def test_without_turn_configuration_welcome_is_exactly_v1() -> None:
    async with RoomServer(ServerConfig(port=0)) as server:
        ws, welcome = await join(server.url)
        assert set(welcome) == V1_WELCOME
        await ws.close()


# ----------------------------------------------------------------------------- the CLI


def cli_config(*argv: str) -> ServerConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--turn-url", "turn:t.example"], "needs a TURN secret"),
        (["--turn-secret", "s"], "at least one --turn-url"),
        (["--turn-secret", " ", "--turn-url", "turn:t.example"], "--turn-secret is empty"),
        (["--turn-secret", "s", "--turn-url", "https://t.example"], "not a STUN/TURN URL"),
        (["--turn-secret", "s", "--turn-url", "turn:t.example:70000"], "not a port number"),
        (["--turn-secret", "s", "--turn-url", "turn:t.example?transport=x"], "udp or tcp"),
        (["--turn-secret", "s", "--turn-url", "stun:t.example"], "no turn: or turns: URL"),
        (["--turn-secret-file", "/nonexistent/secret", "--turn-url", "turn:t"], "cannot read"),
        (["--limit-exempt", "localhost"], "is not an IP network"),
    ],
)
def test_cli_refuses_bad_turn_and_limit_settings(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_config(*argv)
    assert message in str(exc.value.code)


@pytest.mark.parametrize(
    "argv",
    [
        ["--turn-ttl", "0"],
        ["--turn-ttl", "-5"],
        ["--max-connections-per-ip", "-1"],
        ["--connection-rate-per-ip", "inf"],
        ["--connection-burst-per-ip", "0"],
        ["--turn-secret", "a", "--turn-secret-file", "f"],  # one or the other
    ],
)
def test_cli_refuses_bad_numbers_at_parsing(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_cli_reads_the_secret_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text("from-the-file\n")
    config = cli_config("--turn-secret-file", str(secret_file), "--turn-url", "turn:t.example")
    assert config.turn_secret == "from-the-file" and config.turn_urls == ("turn:t.example",)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SystemExit, match="is empty"):
        cli_config("--turn-secret-file", str(empty), "--turn-url", "turn:t.example")
    monkeypatch.setenv(TURN_SECRET_ENV, "from-the-environment")
    assert cli_config("--turn-url", "turn:t.example").turn_secret == "from-the-environment"
    assert cli_config().turn_secret is None  # the variable alone changes nothing
    config = cli_config("--turn-secret", "flag", "--turn-url", "turn:t.example", "--turn-ttl", "60")
    assert (config.turn_secret, config.turn_ttl) == ("flag", 60.0)


async def test_the_server_process_issues_credentials_from_a_secret_file(tmp_path) -> None:
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(SECRET + "\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(TURN_SECRET_ENV, None)
    argv = ["--host", "127.0.0.1", "--port", "0", "--turn-secret-file", str(secret_file)]
    for url in TURN_URLS:
        argv += ["--turn-url", url]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "desktop_call.server", *argv, "--turn-ttl", "600",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=REPO, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            line = (await proc.stdout.readline()).decode()
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("ws://127.0.0.1:"), line
        before = time.time()
        ws, welcome = await join(url)
        check_credentials(welcome, before, 600)  # a second's tick apart at most
        await ws.close()
    finally:
        proc.kill()
        await proc.wait()


# -------------------------------------------------------------------------- the client


def test_issued_servers_are_parsed_and_malformed_parts_left_out(caplog) -> None:
    servers = issued_ice_servers(
        [
            {"urls": ["stun:s.example:3478", "bogus:x"]},
            {"urls": "turn:t.example:3478?transport=tcp", "username": "u", "credential": "c"},
            {"urls": "turns:t.example:5349", "username": "u"},  # no credential
            {"urls": 5},
            "not an object",
            {"urls": ["turn:t.example"], "username": 7, "credential": "c"},
        ]
    )
    assert servers == (
        IceServer("stun:s.example:3478"),
        IceServer("turn:t.example:3478?transport=tcp", "u", "c"),
    )
    assert issued_ice_servers(None) == ()
    assert issued_ice_servers({"urls": "turn:t.example"}) == ()
    assert issued_ice_servers([{"urls": ["stun:s.example"] * 40}]) == (
        (IceServer("stun:s.example"),) * 16
    )
    assert "not a list" in caplog.text and "no credentials" in caplog.text


def test_configured_servers_win_and_issued_ones_fill_in() -> None:
    mine = (IceServer("stun:mine.example"), IceServer("turn:mine.example", "me", "pw"))
    issued = (
        IceServer("stun:srv.example"),
        IceServer("turn:srv.example", "1:p", "x"),
        IceServer("turn:mine.example", "1:p", "x"),  # same URL: mine keeps my credentials
    )
    assert merge_ice_servers(mine, issued) == (*mine, issued[0], issued[1])
    assert merge_ice_servers((), issued) == issued[:2] + issued[2:]
    assert merge_ice_servers(mine, ()) == mine
    rtc = IceConfig(servers=()).rtc_configuration(issued[1:2])
    (server,) = rtc.iceServers
    assert (server.urls, server.username, server.credential) == ("turn:srv.example", "1:p", "x")
    assert len(IceConfig().rtc_configuration().iceServers) == 1  # the default STUN, alone


@pytest.mark.parametrize(
    "spec",
    [
        "turn:t.example:3478?transport=tcp",
        "turns:t.example:5349?transport=tcp",
        "turns:t.example:443",
        "stun:s.example:3478,turn:t.example:3478?transport=udp,turns:t.example?transport=tcp",
    ],
)
def test_configured_turn_urls_with_transports_are_accepted(spec: str) -> None:
    servers = parse_ice_servers(spec, username="u", credential="c")
    assert [s.url for s in servers] == spec.split(",")
    assert IceConfig(servers=servers, relay_only=True).rtc_configuration().iceServers
    settings = pytest.importorskip("desktop_call.ui.settings")
    checked = settings.Settings(
        ice_servers=spec, turn_username="u", turn_credential="c", relay_only=True
    ).validated()
    assert checked.problems == () and checked.ice_servers == spec
    assert [s.url for s in checked.ice_config().servers] == spec.split(",")


async def test_the_headless_cli_accepts_turn_urls_with_tcp_transport() -> None:
    # The server wants a token the call does not have: the call fails (exit 2) with the
    # server's reason, which it only reaches after its ICE options were accepted (else 64).
    async with RoomServer(ServerConfig(port=0, token="t")) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "desktop_call", "--headless", "--join", "abcd",
            "--server", server.url, "--ice-servers",
            "turn:127.0.0.1:3478?transport=tcp,turns:127.0.0.1:5349?transport=tcp",
            "--turn-username", "u", "--turn-credential", "c", "--relay-only",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                _out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 2, err.decode()
    assert "unauthorized" in err.decode()


async def test_the_signaling_client_keeps_the_latest_issued_servers() -> None:
    async with RoomServer(turn_config()) as server:
        client = SignalingClient(f"{server.url}/rooms/client-room", "c", ping_interval=None)
        async with client:
            async with asyncio.timeout(T):
                event = await client.next_event()
            assert isinstance(event, Connected)
            stun, udp, tls = client.ice_servers
            assert stun == IceServer("stun:127.0.0.1:3478")
            assert udp.url == "turn:127.0.0.1:3478?transport=udp"
            assert tls.url == "turns:t.example:5349"
            assert udp.username == tls.username and udp.username.endswith(":" + client.peer_id)
            assert udp.credential == rest_password(SECRET, udp.username)


async def test_a_malformed_field_is_ignored_and_the_call_goes_on() -> None:
    registry = Registry(RegistryConfig(), welcome_extra=lambda room, peer: {"ice_servers": "x"})
    async with RoomServer(ServerConfig(port=0), registry=registry) as server:
        url = f"{server.url}/rooms/bad-field"
        async with (
            SignalingClient(url, "a", ping_interval=None) as a,
            SignalingClient(url, "b", ping_interval=None) as b,
        ):
            async with asyncio.timeout(T):
                assert isinstance(await a.next_event(), Connected)
                assert isinstance(await b.next_event(), Connected)
            assert a.ice_servers == () and b.bad_frames == 0
            await b.send_signal({"hello": 1})
            async with asyncio.timeout(T):
                while not isinstance(got := await a.next_event(), SignalReceived):
                    pass
            assert got.data == {"hello": 1}


# ------------------------------------------------------------------------- the session


async def test_the_session_builds_its_peer_connections_with_the_issued_turn(monkeypatch):
    configurations: list = []

    class RecordingPeerConnection(RTCPeerConnection):
        def __init__(self, configuration=None) -> None:
            configurations.append(configuration)
            super().__init__(configuration)

    monkeypatch.setattr(session_module, "RTCPeerConnection", RecordingPeerConnection)
    dead_port = _free_udp_port()  # nothing answers there: the relay candidate never comes
    issued_url = f"turn:127.0.0.1:{dead_port}?transport=udp"
    config = turn_config(turn_urls=(issued_url,), grace=2.0)
    mine = IceServer("stun:127.0.0.1:9")  # configured: comes first
    ice = IceConfig(servers=(mine,), gather_timeout=0.3)
    async with RoomServer(config) as server:
        url = f"{server.url}/rooms/session-room"
        a = CallSession(
            CallOptions(url, "a", ice=ice), video=VideoStreamTrack(), audio=AudioStreamTrack()
        )
        b = CallSession(
            CallOptions(url, "b", ice=ice), video=VideoStreamTrack(), audio=AudioStreamTrack()
        )
        async with a, b:
            for session in (a, b):
                async with asyncio.timeout(20):
                    state = await session.wait_for(lambda s: s is CallState.CONNECTED)
                assert state is CallState.CONNECTED, session.errors
    assert len(configurations) >= 2  # one per side at least
    for configuration in configurations:
        first, issued = configuration.iceServers
        assert (first.urls, first.username) == (mine.url, None)
        assert issued.urls == issued_url
        assert issued.username.split(":")[1] in {a.peer_id, b.peer_id}
        assert issued.credential == rest_password(SECRET, issued.username)


async def test_relay_only_takes_the_issued_turn_and_says_why_without_any(monkeypatch):
    configurations: list = []

    class RecordingPeerConnection(RTCPeerConnection):
        def __init__(self, configuration=None) -> None:
            configurations.append(configuration)
            super().__init__(configuration)

    monkeypatch.setattr(session_module, "RTCPeerConnection", RecordingPeerConnection)
    relay_only = IceConfig(servers=(), relay_only=True, gather_timeout=0.3)
    issued_url = f"turn:127.0.0.1:{_free_udp_port()}?transport=udp"
    async with RoomServer(turn_config(turn_urls=(issued_url,), grace=2.0)) as server:
        url = f"{server.url}/rooms/relay-room"
        a = CallSession(CallOptions(url, "a", ice=relay_only), video=VideoStreamTrack())
        b = CallSession(CallOptions(url, "b", ice=relay_only), video=VideoStreamTrack())
        async with a, b:
            async with asyncio.timeout(10):
                while not configurations:  # noqa: ASYNC110 - made inside the session
                    await asyncio.sleep(0.02)
            assert a.state is not CallState.FAILED and b.state is not CallState.FAILED
    (issued,) = configurations[0].iceServers
    assert issued.urls == issued_url
    assert configurations[0].iceTransportPolicy is RTCIceTransportPolicy.RELAY
    async with RoomServer(ServerConfig(port=0)) as server:  # hands out nothing
        lonely = CallSession(
            CallOptions(f"{server.url}/rooms/relay-room", "a", ice=relay_only),
            video=VideoStreamTrack(),
        )
        async with lonely:
            async with asyncio.timeout(10):
                state = await lonely.wait_for(lambda s: s.final)
    assert state is CallState.FAILED
    assert "Relay-only needs a TURN server" in lonely.machine.reason


# --------------------------------------------------------------------- a real TURN server


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stun_answers(port: int) -> bool:
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)  # a Binding request
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(request, ("127.0.0.1", port))
        try:
            return s.recv(2048)[8:20] == request[8:20]
        except OSError:
            return False


@pytest.fixture
def coturn(tmp_path) -> Iterator[int]:
    """coturn on 127.0.0.1 with ``use-auth-secret`` (the scheme our server issues for)."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn (turnserver) is not installed")
    port = _free_udp_port()
    relay = 49152 + port % 10000
    proc = subprocess.Popen(
        [
            binary, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
            "--relay-ip=127.0.0.1", f"--min-port={relay}", f"--max-port={relay + 50}",
            "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=desktop-call.test",
            "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
            f"--pidfile={tmp_path / 'turn.pid'}", f"--db={tmp_path / 'turn.db'}",
            f"--log-file={tmp_path / 'turn.log'}", "--no-software-attribute",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not _stun_answers(port):
            assert proc.poll() is None, "turnserver exited"
            assert time.monotonic() < deadline, "turnserver did not answer STUN"
        yield port
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _relay_candidates(servers: tuple[IceServer, ...]) -> list[str]:
    pc = RTCPeerConnection(IceConfig(servers=()).rtc_configuration(servers))
    try:
        pc.createDataChannel("probe")
        offer = await pc.createOffer()
        bound_gathering(pc, 3.0)
        await pc.setLocalDescription(offer)
        sdp = pc.localDescription.sdp
        return [line for line in sdp.splitlines() if " typ relay" in line]
    finally:
        await pc.close()


@contextlib.asynccontextmanager
async def issued_by(config: ServerConfig) -> AsyncIterator[tuple[IceServer, ...]]:
    async with RoomServer(config) as server:
        client = SignalingClient(f"{server.url}/rooms/coturn-room", "c", ping_interval=None)
        async with client:
            async with asyncio.timeout(T):
                assert isinstance(await client.next_event(), Connected)
            yield client.ice_servers


async def test_coturn_accepts_the_issued_credentials(coturn: int) -> None:
    url = f"turn:127.0.0.1:{coturn}?transport=udp"
    async with issued_by(turn_config(turn_urls=(url,))) as servers:
        assert [s.url for s in servers] == [url]
        relays = await _relay_candidates(servers)
    assert relays, "no relay candidate: coturn refused the issued credentials"


async def test_coturn_refuses_credentials_made_with_another_secret(coturn: int) -> None:
    url = f"turn:127.0.0.1:{coturn}?transport=udp"
    config = turn_config(turn_urls=(url,), turn_secret="not the TURN server's secret")
    async with issued_by(config) as servers:
        assert servers
        assert await _relay_candidates(servers) == []
