#!/usr/bin/env python3
"""Content and client traffic for scripts/record_demo_capture.sh.

Sub-commands:

``setup WORK --seed S``
    Writes the servers' content (static web files of varied sizes, DNS records,
    files for scp) into WORK and a manifest (WORK/manifest.json) that the client
    side reads.  Sizes are drawn from a seeded generator, so a re-recording has
    the same content and the same distributions.

``params --seed S --label L --session K``
    Prints ``delay_ms jitter_ms rate_kbit`` for one capture session.  The link
    parameters come from one distribution for every class, so that the delay is
    not a give-away of the class.

``run WORK --label L --session K --seed S --server IP``
    Runs one capture session of real client programs (curl, dig, ssh/scp,
    redis-cli/redis-benchmark, psql/pgbench, mosquitto_pub/sub) against the
    servers.  Must run inside the client network namespace.  Every client call
    has a timeout and the number of calls is bounded.

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

LABELS = ("http", "https", "dns", "ssh", "redis", "postgresql", "mqtt")
CALL_TIMEOUT = 30.0


def loguniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def words(rng: random.Random, n: int) -> str:
    alphabet = string.ascii_lowercase
    out: list[str] = []
    size = 0
    while size < n:
        w = "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9)))
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def token(rng: random.Random, n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(n))


# --------------------------------------------------------------------------- setup


def cmd_setup(work: Path, seed: int) -> int:
    rng = random.Random(f"{seed}:setup")
    manifest: dict = {"seed": seed}

    # Web content: html/json/txt (compressible) and bin (random bytes), 100 B .. 12 KB.
    www = work / "www"
    (www / "f").mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(60):
        size = int(loguniform(rng, 100, 12_000))
        kind = rng.choice(["html", "html", "json", "txt", "bin", "css"])
        name = f"f/{i:03d}.{kind}"
        path = www / name
        if kind == "bin":
            path.write_bytes(rng.randbytes(size))
        elif kind == "json":
            items = []
            while sum(len(x) for x in items) < size:
                items.append(json.dumps({"id": rng.randint(1, 10**6), "name": words(rng, 12),
                                         "value": round(rng.random() * 1000, 3)}))
            path.write_text("[" + ",".join(items) + "]")
        elif kind == "html":
            body = words(rng, size)
            path.write_text(f"<!doctype html><html><head><title>{i}</title></head>"
                            f"<body><p>{body}</p></body></html>\n")
        else:
            path.write_text(words(rng, size) + "\n")
        files.append(name)
    (www / "index.html").write_text("<!doctype html><html><body>netsynth demo</body></html>\n")
    manifest["web_files"] = files

    # DNS: hosts with 1..24 A records, TXT records 10..1800 bytes, MX and SRV records.
    dns = work / "dns"
    dns.mkdir(parents=True, exist_ok=True)
    hosts_lines, names = [], []
    for _ in range(80):
        name = f"{token(rng, rng.randint(3, 10)).lower()}.demo.test"
        for _ in range(rng.choice([1, 1, 1, 2, 3, 4, 8, 16, 24])):
            hosts_lines.append(f"10.{rng.randint(100, 250)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} {name}")
        names.append(name)
    (dns / "hosts").write_text("\n".join(hosts_lines) + "\n")
    conf = ["local=/demo.test/", "domain-needed", "bogus-priv"]
    txt_names = []
    for i in range(30):
        name = f"txt{i}.demo.test"
        total = int(loguniform(rng, 10, 1800))
        while total > 0:  # one TXT record per <=200-byte string (dnsmasq's line limit)
            n = min(total, 200)
            conf.append(f'txt-record={name},"{token(rng, n)}"')
            total -= n
        txt_names.append(name)
    mx_names = []
    for i in range(10):
        name = f"mail{i}.demo.test"
        for p in range(rng.randint(1, 4)):
            conf.append(f"mx-host={name},mx{p}.{name},{10 * (p + 1)}")
        mx_names.append(name)
    srv_names = []
    for svc in ("_http._tcp", "_ldap._tcp", "_sip._udp", "_xmpp._tcp", "_imap._tcp"):
        name = f"{svc}.demo.test"
        for p in range(rng.randint(1, 5)):
            conf.append(f"srv-host={name},srv{p}.demo.test,{rng.randint(1, 65535)},{p},{rng.randint(1, 100)}")
        srv_names.append(name)
    (dns / "dnsmasq.conf").write_text("\n".join(conf) + "\n")
    manifest["dns"] = {"a": names, "txt": txt_names, "mx": mx_names, "srv": srv_names}

    # Files for scp downloads / uploads over SSH, 200 B .. 6 KB.
    sshd = work / "ssh" / "files"
    sshd.mkdir(parents=True, exist_ok=True)
    (work / "ssh" / "drop").mkdir(parents=True, exist_ok=True)
    up = work / "ssh" / "upload"
    up.mkdir(parents=True, exist_ok=True)
    ssh_files = []
    for i in range(20):
        size = int(loguniform(rng, 200, 6_000))
        data = rng.randbytes(size) if i % 2 else words(rng, size).encode()
        (sshd / f"d{i:02d}").write_bytes(data)
        (up / f"u{i:02d}").write_bytes(data[::-1])
        ssh_files.append(f"{i:02d}")
    manifest["ssh_files"] = ssh_files

    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return 0


# --------------------------------------------------------------------------- params


def session_params(seed: int, label: str, session: int) -> tuple[float, float, int]:
    rng = random.Random(f"{seed}:link:{label}:{session}")
    delay = loguniform(rng, 1.5, 40.0)            # one-way base delay, ms
    jitter = delay * rng.uniform(0.05, 0.5)       # mean extra per-frame delay, ms
    rate = rng.choice([2_000, 5_000, 10_000, 20_000, 50_000, 100_000])  # kbit/s
    return round(delay, 2), round(jitter, 2), rate


# --------------------------------------------------------------------------- run


class Session:
    def __init__(self, work: Path, label: str, session: int, seed: int, server: str):
        self.work = work
        self.label = label
        self.session = session
        self.server = server
        self.rng = random.Random(f"{seed}:traffic:{label}:{session}")
        self.m = json.loads((work / "manifest.json").read_text())
        self.threads: list[threading.Thread] = []
        self.calls = 0
        self.failures = 0
        self.lock = threading.Lock()

    # -- helpers
    def sh(self, argv: list[str], stdin: bytes | None = None, env: dict | None = None,
           timeout: float = CALL_TIMEOUT) -> None:
        e = dict(os.environ)
        if env:
            e.update(env)
        try:
            r = subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=e, timeout=timeout)
            ok = r.returncode == 0
            err = r.stderr.decode(errors="replace").strip().splitlines()[-1:] if not ok else []
        except subprocess.TimeoutExpired:
            ok, err = False, ["timeout"]
        with self.lock:
            self.calls += 1
            if not ok:
                self.failures += 1
                print(f"  [{self.label}] non-zero: {shlex.join(argv)[:120]} {err}", file=sys.stderr)

    def spawn(self, fn, *a, **kw) -> None:
        t = threading.Thread(target=fn, args=a, kwargs=kw, daemon=True)
        t.start()
        self.threads.append(t)

    def think(self, mean: float = 0.15) -> None:
        time.sleep(min(1.5, self.rng.expovariate(1.0 / mean)))

    def run(self, n_flows: int) -> None:
        gen = getattr(self, f"flow_{self.label}")
        for _ in range(n_flows):
            self.think()
            job = gen()
            if self.rng.random() < 0.35:   # sometimes overlap with the next flow
                self.spawn(job)
            else:
                job()
        for t in self.threads:
            t.join(timeout=CALL_TIMEOUT + 5)

    # -- HTTP / HTTPS (curl against nginx)
    def _curl(self, scheme: str):
        rng, m, host = self.rng, self.m, self.server
        base = f"{scheme}://{host}"
        argv = ["curl", "-s", "-o", "/dev/null", "--max-time", "20",
                "-A", rng.choice(["curl/7.88.1", "netsynth-demo/1.0",
                                  "Mozilla/5.0 (X11; Linux x86_64) demo", "python-requests/2.31"])]
        if scheme == "https":
            argv.append("-k")
            argv += rng.choice([[], [], ["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]])
            if rng.random() < 0.3:
                argv.append("--http2")
        if rng.random() < 0.4:
            argv.append("--compressed")
        kind = rng.random()
        if kind < 0.5:
            urls = [f"{base}/{rng.choice(m['web_files'])}"]
        elif kind < 0.75:  # several requests on one keep-alive connection
            urls = [f"{base}/{rng.choice(m['web_files'])}" for _ in range(rng.randint(2, 4))]
        elif kind < 0.83:
            urls = [f"{base}/missing/{token(rng, 8)}.html"]
        elif kind < 0.9:
            argv.append("-I")
            urls = [f"{base}/{rng.choice(m['web_files'])}"]
        elif kind < 0.95:
            argv += ["-r", f"0-{rng.randint(100, 5000)}"]
            urls = [f"{base}/{rng.choice(m['web_files'])}"]
        else:
            body = token(rng, int(loguniform(rng, 20, 8000)))
            argv += ["-X", "POST", "--data-binary", "@-", "-H", "Content-Type: text/plain"]
            urls = [f"{base}/api/upload"]
            return lambda: self.sh(argv + urls, stdin=body.encode())
        if scheme == "http" and rng.random() < 0.1:
            argv.append("--http1.0")
            urls = urls[:1]
        return lambda: self.sh(argv + urls)

    def flow_http(self):
        return self._curl("http")

    def flow_https(self):
        return self._curl("https")

    # -- DNS over TCP (dig +tcp against dnsmasq)
    def flow_dns(self):
        rng, d = self.rng, self.m["dns"]

        def one() -> list[str]:
            k = rng.random()
            if k < 0.45:
                return [rng.choice(d["a"]), "A"]
            if k < 0.65:
                return [rng.choice(d["txt"]), "TXT"]
            if k < 0.75:
                return [rng.choice(d["mx"]), "MX"]
            if k < 0.82:
                return [rng.choice(d["srv"]), "SRV"]
            if k < 0.9:
                return [rng.choice(d["a"]), "AAAA"]
            return [f"{token(rng, 6).lower()}.demo.test", "A"]  # NXDOMAIN

        argv = ["dig", "+tcp", f"@{self.server}", "+time=5", "+tries=1"]
        argv += rng.choice([[], [], ["+noedns"], ["+bufsize=1232"], ["+nocookie"], ["+short"]])
        n = 1 if rng.random() < 0.6 else rng.randint(2, 6)
        if n > 1:
            argv.append("+keepopen")  # several queries on one TCP connection
        for _ in range(n):
            argv += one()
        return lambda: self.sh(argv)

    # -- SSH / SCP (OpenSSH client against sshd)
    def flow_ssh(self):
        rng, w, host = self.rng, self.work, self.server
        key = rng.choice(["id_ed25519", "id_ed25519", "id_ecdsa", "id_rsa"])
        opts = ["-i", str(w / "ssh" / key), "-F", "/dev/null", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
        opts += rng.choice([[], [], ["-c", "aes128-gcm@openssh.com"], ["-c", "aes256-ctr"],
                            ["-c", "chacha20-poly1305@openssh.com"]])
        if rng.random() < 0.2:
            opts.append("-C")
        k = rng.random()
        f = rng.choice(self.m["ssh_files"])
        if k < 0.25:
            src = f"root@{host}:{w}/ssh/files/d{f}"
            return lambda: self.sh(["scp", "-q", *opts, src, "/dev/null"])
        if k < 0.45:
            dst = f"root@{host}:{w}/ssh/drop/u{f}.{self.session}"
            return lambda: self.sh(["scp", "-q", *opts, str(w / "ssh" / "upload" / f"u{f}"), dst])
        if k < 0.6:  # a short scripted shell session on stdin
            lines = rng.sample(["uname -a", "id", "uptime", "ls -la /etc | head -n 20", "df -h /",
                                "cat /etc/os-release", "ps -e | wc -l", "date", "free -m",
                                "head -c 1500 /etc/services"], k=rng.randint(2, 6))
            script = "".join(f"{c}\nsleep 0.{rng.randint(1, 5)}\n" for c in lines) + "exit\n"
            return lambda: self.sh(["ssh", "-T", *opts, f"root@{host}"], stdin=script.encode())
        cmd = rng.choice([
            "uname -a", "hostname; id", f"ls -la /usr/bin | head -n {rng.randint(5, 150)}",
            f"head -c {int(loguniform(rng, 100, 3000))} /dev/urandom | base64",
            f"seq 1 {rng.randint(10, 800)}", "cat /etc/passwd", "sleep 0.3; date",
            f"cat {w}/ssh/files/d{f} | md5sum",
        ])
        return lambda: self.sh(["ssh", *opts, f"root@{host}", cmd])

    # -- Redis (redis-cli / redis-benchmark against redis-server)
    def flow_redis(self):
        rng, host = self.rng, self.server
        base = ["redis-cli", "-h", host, "-p", "6379"]
        k = rng.random()
        if k < 0.25:
            ks = f"k:{rng.randint(1, 500)}"
            op = rng.choice([
                ["SET", ks, token(rng, int(loguniform(rng, 4, 2000)))],
                ["GET", ks], ["INCR", f"c:{rng.randint(1, 20)}"], ["PING"], ["DBSIZE"],
                ["EXISTS", ks], ["EXPIRE", ks, "600"], ["INFO", rng.choice(["server", "memory", "stats"])],
            ])
            return lambda: self.sh(base + op)
        if k < 0.4:  # one command repeated on one connection, with an interval
            ks = f"k:{rng.randint(1, 500)}"
            op = rng.choice([["GET", ks], ["INCR", f"c:{rng.randint(1, 20)}"], ["PING"],
                             ["LLEN", f"l:{rng.randint(1, 9)}"],
                             ["SET", ks, token(rng, int(loguniform(rng, 4, 500)))]])
            rep = ["-r", str(rng.randint(3, 15)), "-i", f"{rng.uniform(0.02, 0.2):.3f}"]
            return lambda: self.sh(base + rep + op)
        if k < 0.65:  # a batch of inline commands, pipelined (redis-cli --pipe)
            # (redis-cli without arguments would start its REPL, which first fetches
            # ~180 kB of COMMAND DOCS; --pipe is the batch mode)
            cmds = []
            for _ in range(rng.randint(3, 20)):
                ks = f"k:{rng.randint(1, 500)}"
                cmds.append(rng.choice([
                    f"SET {ks} {token(rng, int(loguniform(rng, 4, 1000)))}", f"GET {ks}",
                    f"LPUSH l:{rng.randint(1, 9)} {token(rng, rng.randint(4, 200))}",
                    f"LRANGE l:{rng.randint(1, 9)} 0 {rng.randint(1, 50)}",
                    f"HSET h:{rng.randint(1, 30)} f{rng.randint(1, 9)} {token(rng, rng.randint(4, 300))}",
                    f"HGETALL h:{rng.randint(1, 30)}", f"INCRBY c:{rng.randint(1, 20)} {rng.randint(1, 99)}",
                    f"MGET {' '.join(f'k:{rng.randint(1, 500)}' for _ in range(rng.randint(2, 10)))}",
                    f"SADD s:{rng.randint(1, 5)} {token(rng, 8)}", f"SMEMBERS s:{rng.randint(1, 5)}",
                ]))
            return lambda: self.sh([*base, "--pipe"], stdin=("\r\n".join(cmds) + "\r\n").encode())
        argv = ["redis-benchmark", "-h", host, "-p", "6379", "-q",
                "-n", str(rng.randint(5, 40)), "-c", str(rng.choice([1, 1, 2])),
                "-d", str(int(loguniform(rng, 3, 512))),
                "-t", ",".join(rng.sample(["set", "get", "incr", "lpush", "rpop", "sadd", "hset", "mset"],
                                          k=rng.randint(1, 2)))]
        if rng.random() < 0.3:
            argv += ["-P", str(rng.choice([4, 8, 16]))]
        return lambda: self.sh(argv)

    # -- PostgreSQL (psql / pgbench against postgres)
    def flow_postgresql(self):
        rng, host = self.rng, self.server
        env = {"PGPASSWORD": "demo-password", "PGCONNECT_TIMEOUT": "10",
               "PGSSLMODE": rng.choice(["prefer", "disable"])}
        base = ["psql", "-X", "-q", "-h", host, "-U", "demo", "-d", "demo", "-v", "ON_ERROR_STOP=0"]
        k = rng.random()
        if k < 0.35:
            n = int(loguniform(rng, 1, 300))
            q = rng.choice([
                f"SELECT g, md5(g::text) FROM generate_series(1,{n}) g",
                f"SELECT * FROM items ORDER BY id LIMIT {n}",
                f"SELECT count(*), avg(price) FROM items WHERE id < {n}",
                "SELECT version()", "SELECT now(), current_user",
                f"SELECT repeat('x', {int(loguniform(rng, 10, 6000))})",
            ])
            return lambda: self.sh([*base, "-c", q], env=env)
        if k < 0.6:
            stmts = []
            for _ in range(rng.randint(2, 12)):
                stmts.append(rng.choice([
                    f"INSERT INTO items(name, price) VALUES ('{token(rng, rng.randint(3, 200))}', "
                    f"{rng.randint(1, 10000) / 100});",
                    f"SELECT * FROM items WHERE id = {rng.randint(1, 2000)};",
                    f"UPDATE items SET price = price + 1 WHERE id = {rng.randint(1, 2000)};",
                    f"SELECT name FROM items WHERE name LIKE '{token(rng, 1)}%' LIMIT {rng.randint(1, 100)};",
                    "BEGIN;", "COMMIT;",
                ]))
            return lambda: self.sh(base, stdin="\n".join(stmts).encode(), env=env)
        if k < 0.7:
            return lambda: self.sh([*base, "-c", r"\dt+"], env=env)
        argv = ["pgbench", "-n", "-h", host, "-U", "demo", "-c", str(rng.choice([1, 1, 2])),
                "-t", str(rng.randint(2, 6)), "demo"]
        argv += rng.choice([[], ["-S"], ["-N"], ["-M", "prepared"], ["-M", "extended"]])
        return lambda: self.sh(argv, env=env)

    # -- MQTT (mosquitto_pub / mosquitto_sub against mosquitto)
    def flow_mqtt(self):
        rng, host = self.rng, self.server
        base = ["-h", host, "-p", "1883", "-i", f"demo-{token(rng, 8)}"]
        topic = (f"{rng.choice(['sensors', 'metrics', 'home', 'fleet'])}/{rng.randint(1, 20)}/"
                 f"{rng.choice(['temp', 'state', 'log', 'gps'])}")
        q = str(rng.choice([0, 0, 1, 1, 2]))
        k = rng.random()
        if k < 0.45:
            payload = token(rng, int(loguniform(rng, 2, 3000)))
            argv = ["mosquitto_pub", *base, "-t", topic, "-q", q, "-m", payload]
            if rng.random() < 0.2:
                argv.append("-r")
            return lambda: self.sh(argv)
        if k < 0.75:  # one connection, several messages (one per stdin line)
            lines = [token(rng, int(loguniform(rng, 2, 800))) for _ in range(rng.randint(2, 12))]
            return lambda: self.sh(["mosquitto_pub", *base, "-t", topic, "-q", q, "-l"],
                                   stdin=("\n".join(lines) + "\n").encode())
        # a subscriber that waits for a few messages, fed by a publisher on another connection
        n = rng.randint(1, 8)
        sub = ["mosquitto_sub", *base, "-t", topic.rsplit("/", 1)[0] + "/#", "-q", q,
               "-C", str(n), "-W", "6"]
        msgs = [token(rng, int(loguniform(rng, 2, 600))) for _ in range(n)]
        pub = ["mosquitto_pub", "-h", host, "-p", "1883", "-t", topic, "-q", q, "-l"]

        wait = 0.5 + rng.random() * 0.5

        def pair() -> None:
            t = threading.Thread(target=self.sh, args=(sub,), daemon=True)
            t.start()
            time.sleep(wait)
            self.sh(pub, stdin=("\n".join(msgs) + "\n").encode())
            t.join(timeout=10)
        return pair


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="netsynth demo capture traffic")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("work", type=Path)
    s.add_argument("--seed", type=int, required=True)
    p = sub.add_parser("params")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--label", choices=LABELS, required=True)
    p.add_argument("--session", type=int, required=True)
    r = sub.add_parser("run")
    r.add_argument("work", type=Path)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--label", choices=LABELS, required=True)
    r.add_argument("--session", type=int, required=True)
    r.add_argument("--server", required=True)
    r.add_argument("--min-flows", type=int, default=7)
    r.add_argument("--max-flows", type=int, default=11)
    a = ap.parse_args(argv)
    if a.cmd == "setup":
        return cmd_setup(a.work, a.seed)
    if a.cmd == "params":
        print(*session_params(a.seed, a.label, a.session))
        return 0
    sess = Session(a.work, a.label, a.session, a.seed, a.server)
    n = sess.rng.randint(a.min_flows, a.max_flows)
    t0 = time.monotonic()
    sess.run(n)
    print(f"  {a.label} session {a.session}: {n} client jobs, {sess.calls} calls, "
          f"{sess.failures} non-zero, {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
