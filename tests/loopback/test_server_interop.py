"""The server as others see it: TLS, and a client written from the contract alone."""

import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect

from desktop_call.server import RoomServer, ServerConfig

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SMOKE = SHARED / "anchors" / "bench" / "smoke.py"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return cert_path, key_path, client


async def test_tls_serves_wss_and_relays(tls_files):
    cert, key, client_ctx = tls_files
    config = ServerConfig(port=0, certfile=str(cert), keyfile=str(key))
    async with RoomServer(config) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        room = f"{server.url}/rooms/tls-room"
        async with (
            connect(room, ssl=client_ctx, compression=None) as a,
            connect(room, ssl=client_ctx, compression=None) as b,
        ):
            await a.send(json.dumps({"type": "join", "v": 1, "name": "a"}))
            assert json.loads(await a.recv())["type"] == "welcome"
            await b.send(json.dumps({"type": "join", "v": 1, "name": "b"}))
            assert json.loads(await b.recv())["type"] == "welcome"
            assert json.loads(await a.recv())["type"] == "peer-joined"
            await a.send(json.dumps({"type": "signal", "data": {"hello": "tls"}}))
            async with asyncio.timeout(3):
                relayed = json.loads(await b.recv())
            assert relayed["data"] == {"hello": "tls"}


async def test_plain_websocket_to_a_tls_server_is_refused_and_harms_nothing(tls_files):
    cert, key, client_ctx = tls_files
    async with RoomServer(ServerConfig(port=0, certfile=str(cert), keyfile=str(key))) as server:
        plain = server.url.replace("wss://", "ws://")
        with pytest.raises(Exception):  # noqa: B017 - any refusal is right; the server must live
            async with connect(f"{plain}/rooms/abcd", open_timeout=3):
                pass
        async with connect(f"{server.url}/rooms/abcd", ssl=client_ctx) as ws:
            await ws.send(json.dumps({"type": "join", "v": 1, "name": "after"}))
            async with asyncio.timeout(3):
                assert json.loads(await ws.recv())["type"] == "welcome"


@pytest.mark.skipif(not SMOKE.is_file(), reason="the shared anchors are not beside this checkout")
async def test_the_shared_contract_smoke_client_passes():
    """The reference smoke client (written from PROTOCOL.md alone) against our server."""
    async with RoomServer(ServerConfig(port=0)) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SMOKE),
            f"{server.url}/rooms/{{room}}",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        assert b"SMOKE OK" in out
