#!/usr/bin/env python3
"""Userspace L2 delay line between two network interfaces (a netem stand-in).

Used by scripts/record_demo_capture.sh, which runs it inside a middle network
namespace that owns one end of the client veth pair and one end of the server
veth pair (no IP addresses there, so the kernel in that namespace ignores the
frames).  Every Ethernet frame received on one interface is sent out of the other
after a one-way delay of ``base + jitter`` milliseconds, where the jitter is drawn
per frame from a (seeded) gamma distribution.  Frames of one direction keep their
order (departure times never go backwards), as on a real path without reordering.
Outgoing frames are sent through the interface's qdisc, so a ``tc ... tbf`` rate
limit on the bridge interfaces still applies after the delay.

Only the Python standard library is used (AF_PACKET raw sockets, Linux only, root).
It stops on SIGTERM/SIGINT, or after --max-seconds as a safety bound.
"""

from __future__ import annotations

import argparse
import heapq
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263


def open_raw(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setblocking(False)
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--if-a", required=True, help="interface towards the client")
    ap.add_argument("--if-b", required=True, help="interface towards the server")
    ap.add_argument("--delay-ms", type=float, default=10.0, help="base one-way delay")
    ap.add_argument("--jitter-ms", type=float, default=2.0, help="mean extra per-frame delay")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600.0, help="safety bound")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    sa, sb = open_raw(args.if_a), open_raw(args.if_b)
    peer = {sa.fileno(): sb, sb.fileno(): sa}
    socks = {sa.fileno(): sa, sb.fileno(): sb}
    last_depart = {sa.fileno(): 0.0, sb.fileno(): 0.0}
    queue: list[tuple[float, int, int, bytes]] = []  # (depart, seq, in_fd, frame)
    seq = 0
    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    deadline = time.monotonic() + args.max_seconds
    # gamma with shape 2 -> mean = jitter, occasional longer tails
    shape = 2.0
    scale = args.jitter_ms / shape if args.jitter_ms > 0 else 0.0
    forwarded = 0

    while not stop and time.monotonic() < deadline:
        now = time.monotonic()
        timeout = 0.2
        if queue:
            timeout = max(0.0, min(timeout, queue[0][0] - now))
        try:
            ready, _, _ = select.select(list(socks), [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            s = socks[fd]
            while True:
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:  # our own transmissions
                    continue
                extra = rng.gammavariate(shape, scale) if scale > 0 else 0.0
                depart = max(now + (args.delay_ms + extra) / 1000.0, last_depart[fd])
                last_depart[fd] = depart
                heapq.heappush(queue, (depart, seq, fd, frame))
                seq += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, frame = heapq.heappop(queue)
            try:
                peer[fd].send(frame)
                forwarded += 1
            except (BlockingIOError, OSError):
                pass  # dropped, like a full queue on a real link
    for s in (sa, sb):
        s.close()
    print(f"delay_bridge: forwarded {forwarded} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
