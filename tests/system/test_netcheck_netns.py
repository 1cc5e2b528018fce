"""``desktop-call --check`` on a network that drops UDP, built from network namespaces.

Two namespaces made here and nowhere else: a client (``c``) and a server side (``s``)
joined by a veth pair created directly inside them (the root namespace gets no link
and no address). The room server and coturn run in ``s``; the check runs in ``c``,
first as is (UDP works), then with iptables dropping every UDP packet in ``c``.
Everything is torn down even when a step fails. Needs root, iproute2, iptables and
coturn; skips with the reason otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "netns-turn-secret"
SERVER_IP, CLIENT_IP = "10.231.0.2", "10.231.0.1"
ROOM_PORT, TURN_PORT = 8787, 3478

# A Binding request every 100 ms until an answer, for 10 s (run inside the client namespace).
STUN_PROBE = """
import socket, sys, time
from aioice import stun
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.1)
server = (sys.argv[1], int(sys.argv[2]))
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    sock.sendto(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)), server)
    try:
        sock.recvfrom(2048)
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""


def _missing() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces and iptables rules"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Bed:
    client: str  # namespace names
    server: str
    username: str
    credential: str

    def in_client(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.client, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def check(self, ice_servers: str) -> tuple[int, dict[str, Any], str]:
        proc = self.in_client(
            sys.executable,
            "-m",
            "desktop_call",
            "--check",
            "--server",
            f"ws://{SERVER_IP}:{ROOM_PORT}",
            "--ice-servers",
            ice_servers,
            "--turn-username",
            self.username,
            "--turn-credential",
            self.credential,
            "--report",
            "-",
        )
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"no JSON report:\n{proc.stdout}\n{proc.stderr}") from None
        return proc.returncode, report, proc.stderr

    @contextlib.contextmanager
    def udp_dropped(self, where: str) -> Iterator[None]:
        """Drop every UDP packet: on this computer ("here": sending fails with EPERM) or
        "on the way" (the far side drops them: packets leave, nothing comes back)."""
        namespace = self.client if where == "here" else self.server
        rules = [("OUTPUT", "-p", "udp", "-j", "DROP"), ("INPUT", "-p", "udp", "-j", "DROP")]
        added = []
        try:
            for rule in rules:
                run("ip", "netns", "exec", namespace, "iptables", "-A", *rule)
                added.append(rule)
            yield
        finally:
            for rule in added:
                run("ip", "netns", "exec", namespace, "iptables", "-D", *rule, check=False)


class _Lines:
    """Reads a process's output on a thread; ``wait_for`` blocks until a line matches."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: any(text in x for x in self.lines), timeout)


@pytest.fixture(scope="module")
def bed(tmp_path_factory) -> Iterator[Bed]:
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    client, server = f"dcnc-{tag}-c", f"dcnc-{tag}-s"
    tmp = tmp_path_factory.mktemp("netns")
    procs: list[subprocess.Popen[str]] = []
    with contextlib.ExitStack() as stack:
        created = run("ip", "netns", "add", client, check=False)
        if created.returncode != 0:
            pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
        stack.callback(run, "ip", "netns", "del", client, check=False)
        run("ip", "netns", "add", server)
        stack.callback(run, "ip", "netns", "del", server, check=False)
        # Both ends created inside the namespaces: nothing appears in the root namespace.
        run(
            "ip", "link", "add", f"nc{tag}c", "netns", client,
            "type", "veth", "peer", "name", f"nc{tag}s", "netns", server,
        )  # fmt: skip
        for ns, link, ip in ((client, f"nc{tag}c", CLIENT_IP), (server, f"nc{tag}s", SERVER_IP)):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", link)
            run("ip", "-n", ns, "link", "set", link, "up")

        def start(*cmd: str) -> _Lines:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", server, *cmd],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            procs.append(proc)
            return _Lines(proc)

        def stop_all() -> None:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        stack.callback(stop_all)
        room = start(
            sys.executable, "-m", "desktop_call.server",
            "--host", SERVER_IP, "--port", str(ROOM_PORT), "--log-level", "info",
        )  # fmt: skip
        turn = start(
            "turnserver", "-n",
            f"--listening-ip={SERVER_IP}", f"--listening-port={TURN_PORT}",
            f"--relay-ip={SERVER_IP}",
            "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=netns.test",
            "--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout",
            f"--pidfile={tmp / 'coturn.pid'}", f"--userdb={tmp / 'coturn.db'}",
        )  # fmt: skip
        assert room.wait_for('"listening"', 15), "".join(room.lines)
        probe = Bed(client, server, "", "").in_client(
            sys.executable, "-c", STUN_PROBE, SERVER_IP, str(TURN_PORT), timeout=20
        )
        assert probe.returncode == 0, f"coturn did not answer:\n{''.join(turn.lines)[-3000:]}"

        username = f"{int(time.time()) + 3600}:netns"
        digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
        yield Bed(client, server, username, base64.b64encode(digest).decode())

    # torn down: neither namespace is left behind
    names = run("ip", "netns", "list").stdout
    assert client not in names and server not in names


def stun_and_turn(transport: str) -> str:
    return f"stun:{SERVER_IP}:{TURN_PORT},turn:{SERVER_IP}:{TURN_PORT}?transport={transport}"


def test_with_udp_allowed_the_path_is_direct(bed):
    code, report, err = bed.check(stun_and_turn("tcp"))  # the control for the tests below
    assert code == 0, err
    assert report["status"] == "ok"
    assert report["udp"]["status"] == "works"
    assert report["nat"]["behind_nat"] is False
    assert report["stun"][0]["mapped_address"].startswith(f"{CLIENT_IP}:")
    assert "connect directly in most cases" in report["headline"]


@pytest.mark.parametrize(
    ("where", "evidence"),
    [
        ("here", "blocked by a firewall on this computer"),
        ("on the way", "no server answered over UDP"),
    ],
)
def test_udp_blocked_calls_go_through_turn_over_tcp(bed, where, evidence):
    with bed.udp_dropped(where):
        code, report, err = bed.check(stun_and_turn("tcp"))
    assert code == 0, err  # calls can work: relayed over TCP
    assert report["server"]["state"] == "ok"  # the room server (TCP) still answers
    assert report["stun"][0]["error"] == "timeout"
    assert report["udp"]["status"] == "blocked"
    assert report["udp"]["certain"]  # a local refusal, or TURN answering over TCP only
    assert evidence in report["udp"]["message"]
    (turn,) = report["turn"]
    assert turn["state"] == "ok" and turn["transport"] == "tcp"
    assert turn["relayed_address"].startswith(f"{SERVER_IP}:")
    assert report["status"] == "warning"
    assert report["headline"] == (
        "Your network blocks UDP: calls will be relayed through the TURN server over TCP "
        f"(turn:{SERVER_IP}:{TURN_PORT}?transport=tcp), with a little more delay."
    )
    assert "Your network blocks UDP" in err  # the human summary


def test_udp_blocked_without_turn_over_tcp_calls_cannot_work(bed):
    with bed.udp_dropped("on the way"):
        code, report, err = bed.check(stun_and_turn("udp"))
    assert code == 1, err
    assert report["calls_can_work"] is False
    assert report["server"]["state"] == "ok"
    assert report["udp"]["status"] == "blocked"
    assert report["turn"][0]["error"] == "timeout"
    assert "blocks UDP" in report["headline"]
    assert report["headline"].endswith(
        "calls need a TURN server over TCP/TLS (turn:HOST:3478?transport=tcp or "
        "turns:HOST:5349); none is configured."
    )
