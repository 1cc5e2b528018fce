"""A network test bed: two hosts behind two NATs, an "internet" with the room server
and a STUN/TURN server (coturn), all in network namespaces the test creates itself.

::

                         internet (namespace, bridge br0, default route to nowhere)
               room server ws://203.0.113.1:8787   coturn 203.0.113.1:3478
                                        |
                  +---------------------+---------------------+
                  | 203.0.113.10 (wan)                        | 203.0.113.20 (wan)
               NAT A  (MASQUERADE)                         NAT B
               FORWARD -> chain "impair"
                  | 10.1.0.1 (lan)                            | 10.2.0.1 (lan)
                  |                                           |
               host A 10.1.0.2                             host B 10.2.0.2

Addresses are documentation ranges (TEST-NET-3 outside, 10/8 inside); nothing is put
in the root namespace (every veth is created directly between two of our namespaces),
and every iptables rule lives in one of our namespaces, so deleting the namespaces
removes all of it. Namespace names carry a prefix, the pid and a counter
(``dcn<pid>x<n>-nata``), so parallel runs never collide.

Two NAT kinds:

- ``cone``: plain ``MASQUERADE``. Linux keeps the source port when it can, so one
  private port maps to one public port whatever the destination (endpoint-independent
  mapping), and conntrack lets in only replies from the address *and port* a packet went
  to (port-restricted cone). Unsolicited inbound packets are dropped before conntrack
  confirms them, as a home router's firewall does: otherwise the peer's first check
  would leave an inbound entry that makes the NAT pick another port for our own
  outbound packet to that peer, and hole punching would fail the way it does on
  symmetric NATs.
- ``symmetric``: ``MASQUERADE --random-fully``: every new destination gets a random
  public port, so a server-reflexive candidate learnt from STUN is useless to the peer
  and only a TURN relay connects the hosts.

Impairments go into a chain ``impair`` that NAT A's ``FORWARD`` chain jumps to first
(:meth:`NetBed.impair`, :meth:`NetBed.clear_impairments`): everything between host A
and the rest of the world crosses it, in both directions.

Run ``python tests/system/netbed.py [cone|symmetric]`` as root to build a bed, print how
to use it, and tear it down on Enter.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "dcn"
PROJECT = Path(__file__).resolve().parents[2]

SERVER_IP = "203.0.113.1"
SERVER_PORT = 8787
TURN_PORT = 3478
WAN = {"a": "203.0.113.10", "b": "203.0.113.20"}
LAN = {"a": "10.1.0", "b": "10.2.0"}  # .1 the router, .2 the host
TURN_SECRET = "netbed-static-auth-secret"
TURN_REALM = "netbed.test"

_counter = itertools.count(1)


@functools.cache
def netbed_problem() -> str | None:
    """Why the bed cannot be built here (``None`` if it can): a reason for ``skip``."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth links, iptables)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install {package})"
    probe = f"{PREFIX}{os.getpid()}probe"
    try:
        _run(["ip", "netns", "add", probe])
        _run(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n"])
    except RuntimeError as exc:
        return f"network namespaces or iptables do not work here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def turn_rest_credentials(
    secret: str, label: str, ttl: float = 3600, now: float | None = None
) -> tuple[str, str]:
    """coturn's TURN REST credentials: ``"<expiry>:<label>"`` and its base64 HMAC-SHA1."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{label}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _run(argv: Sequence[str], *, check: bool = True) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def cleanup_stale() -> None:
    """Delete namespaces left by test runs that died without tearing down (their pid is
    gone), with the processes still inside them (ours: nothing else uses these names)."""
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)(?:x\d+-\w+|probe)", name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        for pid in _run(["ip", "netns", "pids", name], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run(["ip", "netns", "del", name], check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------- processes


@dataclass
class Line:
    at: float  # time.time() when read
    text: str


class Proc:
    """A process in a namespace: stdout lines kept (and awaitable), stderr to a file."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.lines: list[Line] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log.with_suffix(".out").open("w") as out:
            while line := await self.process.stdout.readline():
                text = line.decode(errors="replace").rstrip("\n")
                self.lines.append(Line(time.time(), text))
                out.write(f"{time.time():.3f} {text}\n")
                out.flush()
                self._changed.set()
        self._changed.set()

    async def wait_line(self, pattern: str, timeout: float, *, after: float = 0.0) -> Line:
        """The first stdout line matching ``pattern`` (regex) read at or after ``after``."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if line.at >= after and regex.search(line.text):
                        return line
                if self._reader.done():
                    raise AssertionError(f"{self.name} ended before printing {pattern!r}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_lines(self, pattern: str, count: int, timeout: float, *, after: float = 0.0):
        """Wait until ``count`` stdout lines matching ``pattern`` were read after ``after``."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                found = [ln for ln in self.lines if ln.at >= after and regex.search(ln.text)]
                if len(found) >= count:
                    return found[:count]
                if self._reader.done():
                    raise AssertionError(f"{self.name} ended before printing {pattern!r}")
                self._changed.clear()
                await self._changed.wait()

    async def wait(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            await self._reader
            return code

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def tail(self, lines: int = 40) -> str:
        """The end of stdout and stderr, for failure messages."""
        out = "\n".join(line.text for line in self.lines[-lines:])
        err = ""
        with contextlib.suppress(OSError):
            err = "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return f"--- {self.name} stdout ---\n{out}\n--- {self.name} stderr ---\n{err}"


# ---------------------------------------------------------------------------------- bed


@dataclass
class NetBed:
    """Namespaces, links, NATs, and the processes started in them; :meth:`close` undoes all.

    Build with :func:`build` (``async with build(...) as bed``).
    """

    nat: str  # "cone" or "symmetric"
    workdir: Path
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}x{next(_counter)}")
    namespaces: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    server: Proc | None = None
    turn: Proc | None = None
    grace: float = 10.0
    wan: dict[str, str] = field(default_factory=lambda: dict(WAN))  # NATs' outside addresses

    def ns(self, role: str) -> str:
        """``inet``, ``nata``, ``natb``, ``hosta``, ``hostb``: the namespace's name."""
        return f"{self.tag}-{role}"

    @property
    def server_url(self) -> str:
        return f"ws://{SERVER_IP}:{SERVER_PORT}"

    def ice_args(self, label: str) -> list[str]:
        """Headless options for our STUN and TURN servers, with fresh REST credentials."""
        username, credential = turn_rest_credentials(TURN_SECRET, label)
        return [
            "--ice-servers",
            f"stun:{SERVER_IP}:{TURN_PORT},turn:{SERVER_IP}:{TURN_PORT}",
            "--turn-username",
            username,
            "--turn-credential",
            credential,
        ]

    # -- commands in namespaces

    def ip(self, ns: str, *args: str) -> str:
        return _run(["ip", "-n", self.ns(ns), *args])

    def exec(self, ns: str, *argv: str, check: bool = True) -> str:
        return _run(["ip", "netns", "exec", self.ns(ns), *argv], check=check)

    def iptables(self, ns: str, *args: str) -> str:
        return self.exec(ns, "iptables", "-w", *args)

    # -- building

    def _create(self) -> None:
        for role in ("inet", "nata", "natb", "hosta", "hostb"):
            _run(["ip", "netns", "add", self.ns(role)])
            self.namespaces.append(self.ns(role))
            self.ip(role, "link", "set", "lo", "up")
        self.ip("inet", "link", "add", "br0", "type", "bridge")
        self.ip("inet", "addr", "add", f"{SERVER_IP}/24", "dev", "br0")
        self.ip("inet", "link", "set", "br0", "up")
        # The rest of the internet: private and unknown addresses vanish there silently,
        # as they would past a real uplink (without a route, coturn's relay socket gets
        # ENETUNREACH for a peer's private host candidate and coturn ends the allocation).
        # (A veth whose far end stays down: not every kernel has the dummy device.)
        self.ip("inet", "link", "add", "uplink", "type", "veth", "peer", "name", "nowhere")
        self.ip("inet", "link", "set", "uplink", "up")
        self.ip("inet", "route", "add", "default", "dev", "uplink")
        for side in ("a", "b"):
            nat, host, lan = f"nat{side}", f"host{side}", LAN[side]
            self.ip("inet", "link", "add", f"to-{nat}", "type", "veth",
                    "peer", "name", "wan", "netns", self.ns(nat))  # fmt: skip
            self.ip("inet", "link", "set", f"to-{nat}", "master", "br0", "up")
            self.ip(nat, "addr", "add", f"{WAN[side]}/24", "dev", "wan")
            self.ip(nat, "link", "set", "wan", "up")
            self.ip(nat, "route", "add", "default", "via", SERVER_IP)
            self.ip(nat, "link", "add", "lan", "type", "veth",
                    "peer", "name", "eth0", "netns", self.ns(host))  # fmt: skip
            self.ip(nat, "addr", "add", f"{lan}.1/24", "dev", "lan")
            self.ip(nat, "link", "set", "lan", "up")
            self.ip(host, "addr", "add", f"{lan}.2/24", "dev", "eth0")
            self.ip(host, "link", "set", "eth0", "up")
            self.ip(host, "route", "add", "default", "via", f"{lan}.1")
            self._nat_rules(nat)

    def _nat_rules(self, nat: str) -> None:
        self.exec(nat, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        masquerade = ["-j", "MASQUERADE"] + (["--random-fully"] if self.nat == "symmetric" else [])
        self.iptables(nat, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", *masquerade)
        self.iptables(nat, "-N", "impair")
        self.iptables(nat, "-A", "FORWARD", "-j", "impair")
        for chain in ("FORWARD", "INPUT"):
            self.iptables(
                nat, "-A", chain, "-i", "wan", "-m", "conntrack",
                "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT",
            )  # fmt: skip
            self.iptables(nat, "-A", chain, "-i", "wan", "-j", "DROP")

    async def spawn(
        self,
        ns: str,
        name: str,
        *argv: str,
        env: dict[str, str] | None = None,
        merge_stderr: bool = False,
    ) -> Proc:
        """Start ``argv`` in namespace ``ns``; stopped (SIGKILL if need be) by :meth:`close`.

        ``merge_stderr``: its log lines become awaitable lines too (the room server's
        one JSON line per join, drop, timeout)."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.ns(ns), *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge_stderr else stderr,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
                cwd=PROJECT,
            )  # fmt: skip
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    async def start_server(self, timeout: float = 20.0) -> Proc:
        """The room server on 203.0.113.1 (again, after :meth:`kill_server`)."""
        self.server = await self.spawn(
            "inet",
            f"server{sum(p.name.startswith('server') for p in self.procs)}",
            sys.executable, "-m", "desktop_call.server",
            "--host", SERVER_IP, "--port", str(SERVER_PORT), "--grace", str(self.grace),
            "--log-level", "info", merge_stderr=True,
        )  # fmt: skip
        await self.server.wait_line("listening on", timeout)
        return self.server

    async def kill_server(self) -> None:
        assert self.server is not None
        self.server.signal(signal.SIGKILL)
        await self.server.wait(10)

    async def start_turn(self, timeout: float = 20.0) -> Proc:
        turn_dir = self.workdir / "turn"
        turn_dir.mkdir(exist_ok=True)
        self.turn = await self.spawn(
            "inet", "turnserver", "turnserver", "-n",
            "--listening-ip", SERVER_IP, "--relay-ip", SERVER_IP,
            "--listening-port", str(TURN_PORT), "--min-port", "49152", "--max-port", "65535",
            "--use-auth-secret", "--static-auth-secret", TURN_SECRET, "--realm", TURN_REALM,
            "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli", "--no-multicast-peers",
            # What a public TURN server should refuse to relay to (its own private nets).
            "--denied-peer-ip", "10.0.0.0-10.255.255.255",
            "--denied-peer-ip", "172.16.0.0-172.31.255.255",
            "--denied-peer-ip", "192.168.0.0-192.168.255.255",
            "--log-file", "stdout", "--simple-log", "-v",
            "--pidfile", str(turn_dir / "turnserver.pid"), "--db", str(turn_dir / "turndb"),
        )  # fmt: skip
        # Ready when it answers a STUN binding request, asked from host A through NAT A:
        # that also checks the routing and the NAT (the mapped address is NAT A's).
        deadline = time.monotonic() + timeout
        while True:
            mapped = await asyncio.to_thread(self.stun_mapped_address, "hosta")
            if mapped is not None:
                if mapped[0] != WAN["a"]:
                    raise RuntimeError(f"STUN from host A saw {mapped}, not NAT A's address")
                return self.turn
            if self.turn.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coturn did not answer STUN\n{self.turn.tail()}")

    def stun_mapped_address(self, ns: str, port: int = 0) -> tuple[str, int] | None:
        """Ask our STUN server from namespace ``ns``: the address it saw (or ``None``)."""
        out = self.exec(ns, sys.executable, "-c", _STUN_PROBE, SERVER_IP, str(TURN_PORT),
                        str(port), check=False)  # fmt: skip
        found = json.loads(out or "null")
        return (found[0], found[1]) if found else None

    # -- impairments (NAT A's FORWARD chain: host A <-> everything, both directions)

    def impair(self, *rule: str, nat: str = "nata") -> None:
        """Append a rule to the ``impair`` chain, e.g. ``-p udp -j DROP``."""
        self.iptables(nat, "-A", "impair", *rule)

    def loss(self, probability: float, *, nat: str = "nata", protocol: str = "udp") -> None:
        self.impair(
            "-p", protocol, "-m", "statistic", "--mode", "random",
            "--probability", f"{probability:g}", "-j", "DROP", nat=nat,
        )  # fmt: skip

    def blackout(self, *, nat: str = "nata") -> None:
        """Drop everything host A sends or receives."""
        self.impair("-j", "DROP", nat=nat)

    def clear_impairments(self, nat: str = "nata") -> None:
        self.iptables(nat, "-F", "impair")

    def change_wan_address(self, side: str, new: str) -> None:
        """Renumber a NAT's outside address (an ISP lease change, a new network)."""
        nat = f"nat{side}"
        old = self.wan[side]
        # (Deleting the primary address deletes secondaries too: old one first.)
        # MASQUERADE forgets the old address's mappings when it goes; the default route
        # goes with it.
        self.ip(nat, "addr", "del", f"{old}/24", "dev", "wan")
        self.ip(nat, "addr", "add", f"{new}/24", "dev", "wan")
        self.ip(nat, "route", "replace", "default", "via", SERVER_IP)
        self.wan[side] = new

    # -- teardown

    async def close(self) -> None:
        # Python processes still running at the end: their stacks first (faulthandler
        # writes them to the log on SIGABRT), which tells a hang from a slow test.
        stuck = [p for p in self.procs if p.returncode is None and p.name.startswith("peer")]
        for proc in stuck:
            proc.signal(signal.SIGABRT)
        for proc in stuck:
            with contextlib.suppress(Exception):
                await proc.wait(3)
        for proc in self.procs:
            proc.signal(signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(Exception):
                await proc.wait(10)
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()


@contextlib.asynccontextmanager
async def build(nat: str, workdir: Path, *, grace: float = 10.0, turn: bool = True):
    """A bed with the room server (and coturn) running; torn down on exit, failure or not.

    ``grace``: the room server's resume grace period (shorter than its 30 s default so a
    killed peer's slot frees within a test).
    """
    if nat not in ("cone", "symmetric"):
        raise ValueError(f"nat must be cone or symmetric, not {nat!r}")
    cleanup_stale()
    bed = NetBed(nat, workdir, grace=grace)
    try:
        bed._create()
        await bed.start_server()
        if turn:
            await bed.start_turn()
        yield bed
    finally:
        await bed.close()


# ------------------------------------------------------------------------ headless calls


@dataclass
class Peer:
    """One headless call process on host A or B."""

    side: str
    proc: Proc
    report_path: Path

    def report(self) -> dict:
        return json.loads(self.report_path.read_text())

    async def wait_video(self, timeout: float, *, after: float = 0.0) -> Line:
        """The first time video frames arrived (on a new connection) at or after ``after``."""
        try:
            return await self.proc.wait_line(r"^video: frames arriving", timeout, after=after)
        except TimeoutError:
            raise AssertionError(
                f"{self.proc.name}: no video within {timeout} s\n{self.proc.tail()}"
            ) from None

    async def wait_state(self, state: str, timeout: float, *, after: float = 0.0) -> Line:
        """The first ``state: <state>`` line printed at or after ``after`` (wall clock)."""
        try:
            return await self.proc.wait_line(rf"^state: {state}\b", timeout, after=after)
        except TimeoutError:
            raise AssertionError(
                f"{self.proc.name} did not reach {state} within {timeout} s\n{self.proc.tail()}"
            ) from None


async def start_peer(
    bed: NetBed, side: str, room: str = "netbed-call", *, name: str | None = None,
    extra: Sequence[str] = (),
) -> Peer:  # fmt: skip
    """``desktop-call --headless`` on host ``side``, with our STUN/TURN servers. It stays
    in the call until :func:`end_call` (SIGTERM: it hangs up and writes its report)."""
    name = name or f"peer{side}"
    report = bed.workdir / f"{name}.json"
    proc = await bed.spawn(
        f"host{side}", name,
        sys.executable, "-m", "desktop_call", "--headless",
        "--join", room, "--server", bed.server_url, "--name", side,
        "--duration", "600", "--connect-timeout", "60",
        "--report", str(report), "--log-level", "info",
        *bed.ice_args(side), *extra,
    )  # fmt: skip
    return Peer(side, proc, report)


async def start_call(
    bed: NetBed, room: str = "netbed-call", timeout: float = 60
) -> tuple[Peer, Peer]:
    """A on host A waits in the room, B on host B joins; returns once both are connected
    and receiving video."""
    a = await start_peer(bed, "a", room)
    await a.wait_state("waiting", timeout)
    b = await start_peer(bed, "b", room)
    await asyncio.gather(a.wait_video(timeout), b.wait_video(timeout))
    return a, b


async def watch_states(*peers: Peer, seconds: float) -> Line | None:
    """Let the call run ``seconds``; returns early with the first state line any peer
    prints meanwhile (the call broke), or None if none did."""
    since = time.time()
    watchers = [
        asyncio.ensure_future(peer.proc.wait_line(r"^state: ", seconds, after=since))
        for peer in peers
    ]
    try:
        done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is None:
                return task.result()
        return None
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


async def end_call(*peers: Peer, timeout: float = 30) -> list[dict]:
    """Hang up (SIGTERM) and return the reports, checking each process wrote one."""
    for peer in peers:
        peer.proc.signal(signal.SIGTERM)
    reports = []
    for peer in peers:
        code = await peer.proc.wait(timeout)
        assert peer.report_path.exists(), f"no report (exit {code})\n{peer.proc.tail()}"
        reports.append(peer.report())
    return reports


# A STUN binding request, for readiness and for checking the NATs: prints the mapped
# address as JSON, or null without an answer in 0.5 s.
_STUN_PROBE = r"""
import json, os, socket, struct, sys
host, port, local = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tid = os.urandom(12)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", local))
s.settimeout(0.5)
try:
    s.sendto(struct.pack("!HHI", 1, 0, 0x2112A442) + tid, (host, port))
    data = s.recv(2048)
except OSError:
    print("null"); sys.exit()
pos, found = 20, None
while pos + 4 <= len(data):
    kind, length = struct.unpack("!HH", data[pos:pos + 4])
    value = data[pos + 4:pos + 4 + length]
    if kind == 0x0020:
        mport = struct.unpack("!H", value[2:4])[0] ^ 0x2112
        addr = struct.unpack("!I", value[4:8])[0] ^ 0x2112A442
        found = [socket.inet_ntoa(struct.pack("!I", addr)), mport]
    pos += 4 + length + (-length % 4)
print(json.dumps(found))
"""


async def _main(nat: str, workdir: Path) -> None:  # pragma: no cover - a manual tool
    async with build(nat, workdir) as bed:
        print(f"{nat} bed up; logs in {workdir}; namespaces:")
        for ns in bed.namespaces:
            print(f"  {ns}")
        print(
            f"\nA call from the hosts:\n  ip netns exec {bed.ns('hosta')} {sys.executable} -m "
            f"desktop_call --headless --join demo --server {bed.server_url} "
            f"{' '.join(bed.ice_args('a'))}\n"
        )
        await asyncio.to_thread(input, "Enter tears it down. ")


if __name__ == "__main__":  # pragma: no cover
    _workdir = Path(f"/tmp/netbed-{os.getpid()}")
    _workdir.mkdir(exist_ok=True)
    asyncio.run(_main(sys.argv[1] if len(sys.argv) > 1 else "cone", _workdir))
