"""Generate a large synthetic Ethernet/IPv4 capture with a realistic flow mix (for benchmarks/extract.py).

Mix (by flow): 55 % TCP with handshake, data both ways and FIN close, 30 % short UDP request/response
(DNS-like), 15 % long UDP streams (QUIC/RTP-like). Packets per flow are heavy-tailed (log-normal), so
most flows are short and most packets belong to long flows, as in real traces; flows overlap in time
(starts uniform over the capture). Payload sizes are bimodal (small control/ACK vs near-MTU data).
Frames are full length (zero payload bytes), as from `tcpdump -s 0`.

    python benchmarks/gen_capture.py /tmp/large.pcap --packets 1000000 --seed 0
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np


def generate(path: Path, n_packets: int, seed: int = 0, duration: float = 600.0) -> int:
    """Write the capture; returns the number of packets written (≥ n_packets)."""
    rng = np.random.default_rng(seed)
    flows = []
    total = 0
    while total < n_packets:
        kind = rng.choice(3, p=[0.55, 0.30, 0.15])
        n = 2 if kind == 1 else int(min(20000, max(4, rng.lognormal(2.8 if kind == 0 else 3.5, 1.3))))
        flows.append((kind, n))
        total += n
    ts_all, frames = [], []
    for fi, (kind, n) in enumerate(flows):
        cip = bytes([10, (fi >> 16) & 255, (fi >> 8) & 255, fi & 255])
        sip = bytes([172, 16, (fi * 7 >> 8) & 255, (fi * 7) & 255])
        cport = 1024 + fi % 60000
        sport = (443, 80, 8080)[fi % 3] if kind == 0 else (53 if kind == 1 else 4433)
        t = rng.uniform(0, duration)
        gaps = rng.exponential(0.02 if kind != 2 else 0.05, n)
        up = rng.random(n) < 0.45
        big = rng.random(n) < 0.5
        sizes = np.where(big, rng.integers(1000, 1449, n), rng.integers(0, 200, n))
        for i in range(n):
            t += gaps[i]
            fwd = bool(up[i]) if i > 1 else i == 0
            if kind == 0:
                flags = 0x02 if i == 0 else 0x12 if i == 1 else 0x11 if i == n - 1 else 0x18
                pay = 0 if i < 3 or i == n - 1 else int(sizes[i])
                l4 = struct.pack("!HHIIBBHHH", *((cport, sport) if fwd else (sport, cport)), i, i, 0x50, flags,
                                 65535, 0, 0)
                proto = 6
            else:
                pay = int(sizes[i]) if kind == 2 else (40 if i == 0 else 120)
                l4 = struct.pack("!HHHH", *((cport, sport) if fwd else (sport, cport)), 8 + pay, 0)
                proto = 17
            src, dst = (cip, sip) if fwd else (sip, cip)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + pay, 0, 0x4000, 64, proto, 0, src, dst)
            frames.append(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4 + bytes(pay))
            ts_all.append(t)
    order = np.argsort(np.asarray(ts_all), kind="stable")
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        base = 1_700_000_000
        for i in order.tolist():
            ts = ts_all[i]
            sec = int(ts)
            f = frames[i]
            fh.write(struct.pack("<IIII", base + sec, int((ts - sec) * 1e6), len(f), len(f)))
            fh.write(f)
    return len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = generate(args.out, args.packets, args.seed)
    print(f"wrote {n} packets to {args.out} ({args.out.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
