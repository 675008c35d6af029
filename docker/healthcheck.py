"""Container health checks, torch-free and standard-library only (the images' HEALTHCHECK and compose use it).

    python healthcheck.py tcp [--host 127.0.0.1] [--port 5557]
        healthy when something accepts TCP connections on host:port. The learner image checks its control
        port this way (the learner binds it only once it is ready for actors); TensorBoard checks 6006.

    python healthcheck.py actor [--port 5557] [--pid PID]
        healthy when the actor process holds an ESTABLISHED TCP connection to the learner's control port, i.e.
        it is alive *and* connected to a learner. The process is PID (default: the process whose command line
        is ``... -m actor ...``, which is PID 1 in the actor image). The port defaults to AGALITE_CONTROL_PORT
        or 5557. Read from /proc/<pid>/fd and /proc/<pid>/net/tcp{,6}, so it sees that process's network
        namespace and only that process's sockets.

Exit status 0 means healthy, 1 unhealthy (with the reason on stderr), as Docker expects.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import sys
from pathlib import Path

ESTABLISHED = "01"


def check_tcp(host: str, port: int, timeout: float) -> str | None:
    """None when host:port accepts a connection, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"nothing accepts connections on {host}:{port}: {err}"


def find_actor_pids(proc: Path = Path("/proc")) -> list[int]:
    """PIDs (ascending) of the readable processes whose command line runs ``-m actor``."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a == b"-m" and b == b"actor" for a, b in itertools.pairwise(argv)):
            found.append(int(entry.name))
    return sorted(found)


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def established_remote_ports(pid: int, inodes: set[str]) -> set[int]:
    """Remote ports of the ESTABLISHED TCP connections (IPv4 and IPv6) owned by the given socket inodes."""
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == ESTABLISHED and inode in inodes:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def check_actor(port: int, pid: int | None) -> str | None:
    if pid is None:
        pids = find_actor_pids()
        if not pids:
            return "no actor process (python -m actor) is running"
        pid = pids[0]
    try:
        inodes = socket_inodes(pid)
    except OSError as err:
        return f"cannot inspect process {pid}: {err}"
    if port not in established_remote_ports(pid, inodes):
        return f"actor process {pid} has no established connection to a learner control port {port}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="health checks of the agalite-rl containers")
    sub = parser.add_subparsers(dest="mode", required=True)
    tcp = sub.add_parser("tcp", help="something accepts TCP connections on host:port")
    tcp.add_argument("--host", default="127.0.0.1")
    tcp.add_argument("--port", type=int, default=5557)
    tcp.add_argument("--timeout", type=float, default=3.0)
    actor = sub.add_parser("actor", help="the actor process is connected to the learner's control port")
    actor.add_argument("--port", type=int, default=int(os.environ.get("AGALITE_CONTROL_PORT") or 5557))
    actor.add_argument("--pid", type=int, default=None)
    args = parser.parse_args(argv)
    problem = check_tcp(args.host, args.port, args.timeout) if args.mode == "tcp" else check_actor(args.port, args.pid)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
