"""The relay's fast path (one whole text frame per read) agrees with the protocol parser.

Frames are written raw, split and joined in every way, and whatever the split the peer
must receive exactly the messages sent, in order.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from desktop_call.server import RoomServer, ServerConfig
from desktop_call.server.app import _single_text_frame, _text_frame_header


def masked_text(payload: bytes) -> bytes:
    return Frame(Opcode.TEXT, payload).serialize(mask=True, extensions=[])


class RawClient:
    """A client that writes the bytes of its frames in whatever pieces a test chooses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = ClientProtocol(parse_uri("ws://127.0.0.1/rooms/frame-room"))
        self.messages: list[dict] = []

    @classmethod
    async def open(cls, port: int) -> RawClient:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        client.protocol.send_request(client.protocol.connect())
        for data in client.protocol.data_to_send():
            client.writer.write(data)
        async with asyncio.timeout(5):
            while client.protocol.state is not State.OPEN:
                await client._read()
        return client

    async def _read(self) -> None:
        data = await self.reader.read(65536)
        assert data, "the server closed the connection"
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.messages.append(json.loads(event.data))

    async def next_message(self) -> dict:
        async with asyncio.timeout(5):
            while not self.messages:
                await self._read()
        return self.messages.pop(0)

    async def write_pieces(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()
            await asyncio.sleep(0)  # give each piece its own read where TCP allows

    async def join(self, name: str) -> dict:
        self.writer.write(masked_text(json.dumps({"type": "join", "v": 1, "name": name}).encode()))
        return await self.next_message()


def test_frame_helpers_agree_with_the_library():
    for size in (0, 5, 125, 126, 300, 65535):
        payload = os.urandom(size)
        assert _single_text_frame(masked_text(payload)) == payload
        header = _text_frame_header(size)
        assert Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[]) == header + payload
    frame = masked_text(b"x" * 10)
    assert _single_text_frame(frame + frame) is None  # two frames: the parser's job
    assert _single_text_frame(frame[:-1]) is None  # a partial frame too
    binary = Frame(Opcode.BINARY, b"x").serialize(mask=True, extensions=[])
    assert _single_text_frame(binary) is None
    unmasked = Frame(Opcode.TEXT, b"x").serialize(mask=False, extensions=[])
    assert _single_text_frame(unmasked) is None
    assert _single_text_frame(masked_text(b"x" * 70000)) is None  # 64-bit length


@pytest.mark.parametrize(
    "split",
    ["whole", "joined", "bytewise", "header-only-then-rest", "mixed"],
)
async def test_any_split_of_the_byte_stream_relays_the_same_messages(split):
    async with RoomServer(ServerConfig(port=0, rate=10_000, burst=10_000)) as server:
        receiver = await RawClient.open(server.port)
        sender = await RawClient.open(server.port)
        assert (await receiver.join("r"))["type"] == "welcome"
        assert (await sender.join("s"))["type"] == "welcome"
        assert (await receiver.next_message())["type"] == "peer-joined"

        messages = [{"n": n, "pad": "x" * (n * 37 % 300)} for n in range(12)]
        frames = [masked_text(json.dumps({"type": "signal", "data": m}).encode()) for m in messages]
        if split == "whole":
            pieces = frames
        elif split == "joined":
            pieces = [b"".join(frames)]
        elif split == "bytewise":
            pieces = [bytes([b]) for b in b"".join(frames[:3])] + frames[3:]
        elif split == "header-only-then-rest":
            pieces = [p for f in frames for p in (f[:2], f[2:6], f[6:])]
        else:  # partial frames, several frames per piece, then whole frames again
            stream = b"".join(frames[:6])
            pieces = [stream[:7], stream[7:300], stream[300:], *frames[6:]]
        await sender.write_pieces(pieces)

        received = [await receiver.next_message() for _ in messages]
        assert [m["data"] for m in received] == messages
        # Whatever the split, the parser ends at a frame boundary: the fast path is back.
        connections = [c for c in server._connections if c._joined]
        assert all(c._unparsed == 0 for c in connections)
        for client in (sender, receiver):
            client.writer.close()
