#!/usr/bin/env python3
"""Persistence figures for BENCHMARKS.md: start-up time with MESSAGES retained messages, and the
longest stall compaction causes while the store fills.

The store is filled *through the broker*, as clients would: CONNECTIONS raw-socket publishers
send MESSAGES retained QoS 0 PUBLISHes (distinct topics, PAYLOAD bytes each) to a release
broker with persistence on, then one QoS 1 PUBLISH each, whose PUBACK says everything before
it was applied (and written: a retained publish is acknowledged once its record is written).
While it fills, a probe client (a process of its own) publishes a QoS 0 message to itself every millisecond and
records each round trip; compactions start whenever a core's log passes AUTOSAVE bytes (and
twice its snapshot), and each logs its longest stretch without yielding (`longest_slice_us`).

Then the broker is killed with SIGKILL and started again on the same directory (start-up =
from spawn to `hydrant: ready`, the retained messages recovered from the files, replicated to
every core and checked on a few topics), stopped cleanly (after the compaction recovery asks
for when a core has several logs, if it does), and started a third time.

    scripts/bench-persistence.py                     # 1,000,000 messages, 2 cores
    scripts/bench-persistence.py --messages 200000 --no-build

With `--sessions` it measures instead QoS 1 publishing to persistent sessions under each
durability policy (persistence off, `sync = "never"`, `"interval"`, `"always"`): for each, a
fresh broker and `hydrant-loadtest fanout --qos 1 --persistent-subscribers` (clean session 0
subscribers, whose every message is written), once unpaced (throughput) and once paced
(latency at a moderate rate), then the same two runs against Debian's Mosquitto with
persistence off and on (`persistence true`, its default `autosave_interval` of 1800 s: a
snapshot every half hour, nothing written per message); it prints a Markdown table of the
loadtest's JSON figures.

    scripts/bench-persistence.py --sessions --subscribers 50 --publishers 4

With `--stall-sessions N --queued M` it measures instead the longest stall of a compaction
holding persistent sessions: N clean-session-0 subscribers of one topic go offline, M QoS 1
messages are published to it (each queued, and written, for every session: N x M queued
messages), then retained filler publishes grow the log until a compaction runs with every
session in memory; it prints the compactions' `longest_slice_us` (the session copy made when
a compaction starts included, also reported alone as `session_copy_us`).

    scripts/bench-persistence.py --stall-sessions 10000 --queued 10 --cores 1

Only the Python standard library is needed; the broker is built with `cargo build --release`.
"""

import argparse
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 600.0
SOCKET_TIMEOUT = 120.0
LOG_LINE = re.compile(r"^(\S+Z)\s+\w+\s+(\S+): (.*)$")
FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def string(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def connect_packet(client_id: str, clean: bool = True) -> bytes:
    flags = 0x02 if clean else 0x00
    body = string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 600) + string(client_id.encode())
    return packet(0x10, body)


def publish_packet(topic: bytes, payload: bytes, qos: int = 0, retain: bool = False,
                   packet_id: int = 1) -> bytes:
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body)


def subscribe_packet(topic_filter: bytes, qos: int = 0, packet_id: int = 1) -> bytes:
    return packet(0x82, struct.pack("!H", packet_id) + string(topic_filter) + bytes([qos]))


class Connection:
    """A raw MQTT 3.1.1 connection that reads whole packets."""

    def __init__(self, port: int, client_id: str, clean: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.sock.sendall(connect_packet(client_id, clean))
        first, body = self.read_packet()
        if first != 0x20 or body[1] != 0:
            raise RuntimeError(f"{client_id}: CONNACK refused: {first:#x} {body!r}")

    def read_packet(self) -> tuple[int, bytes]:
        while True:
            if len(self.buffer) >= 2:
                length, multiplier, at = 0, 1, 1
                while at < len(self.buffer):
                    byte = self.buffer[at]
                    length += (byte & 0x7F) * multiplier
                    multiplier *= 128
                    at += 1
                    if not byte & 0x80:
                        if len(self.buffer) >= at + length:
                            first = self.buffer[0]
                            body = bytes(self.buffer[at:at + length])
                            del self.buffer[:at + length]
                            return first, body
                        break
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("connection closed by the broker")
            self.buffer += chunk

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
        finally:
            self.sock.close()


def topic_of(n: int) -> bytes:
    return f"bench/{n // 1000}/{n}".encode()


def payload_of(n: int, size: int) -> bytes:
    head = f"value {n} ".encode()
    return head + b"x" * max(size - len(head), 0)


def fill(port: int, first: int, last: int, size: int, name: str, results) -> None:
    """Publishes retained messages first..last (exclusive), then waits for a PUBACK; puts
    (name, monotonic time) on `results`. Runs in a process of its own."""
    conn = Connection(port, name)
    chunk = bytearray()
    for n in range(first, last):
        chunk += publish_packet(topic_of(n), payload_of(n, size), retain=True)
        if len(chunk) >= 1 << 20:
            conn.sock.sendall(chunk)
            chunk = bytearray()
    chunk += publish_packet(f"bench-done/{name}".encode(), b"done", qos=1, packet_id=7)
    conn.sock.sendall(chunk)
    while True:
        first_byte, body = conn.read_packet()
        if first_byte == 0x40 and body[:2] == struct.pack("!H", 7):
            break
    conn.close()
    results.put((name, time.monotonic()))


def probe(port: int, stop, results) -> None:
    """Publishes a QoS 0 message to itself every millisecond until `stop` is set, then puts
    the list of (wall time, round trip) on `results`. Runs in a process of its own, so that
    the fillers do not delay it."""
    conn = Connection(port, "bench-probe")
    conn.sock.sendall(subscribe_packet(b"probe/rtt"))
    first, _ = conn.read_packet()
    assert first == 0x90, first
    samples = []
    seq = 0
    while not stop.is_set():
        seq += 1
        sent_wall, sent = time.time(), time.perf_counter()
        conn.sock.sendall(publish_packet(b"probe/rtt", str(seq).encode()))
        while True:
            first, body = conn.read_packet()
            if first & 0xF0 == 0x30 and body.endswith(str(seq).encode()):
                break
        samples.append((sent_wall, time.perf_counter() - sent))
        time.sleep(0.001)
    conn.close()
    results.put(samples)


class BrokerProcess:
    """The broker under test, its stdout handshake and its stderr log lines."""

    # Every broker started, so that none outlives the script whatever happens.
    started_processes: list = []

    def __init__(self, binary: Path, config: Path, cores: int):
        self.started = time.monotonic()
        env = dict(os.environ, RUST_LOG="info")
        self.process = subprocess.Popen(
            [str(binary), "--config", str(config), "--cores", str(cores), "--bind", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        BrokerProcess.started_processes.append(self.process)
        self.lines: list[str] = []
        self.stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self.stderr_thread.start()
        self.port = None
        deadline = time.monotonic() + READY_TIMEOUT
        for line in self.process.stdout:
            match = re.match(r"hydrant: listening on 127\.0\.0\.1:(\d+) \(mqtt\)", line)
            if match:
                self.port = int(match.group(1))
            if line.startswith("hydrant: ready"):
                self.ready_after = time.monotonic() - self.started
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not become ready")
        else:
            raise RuntimeError(f"the broker exited before ready:\n{self.log_text()}")
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    @staticmethod
    def kill_all_started() -> None:
        """Kills every broker the script started that still runs."""
        for process in BrokerProcess.started_processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.lines.append(re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip("\n")))

    def log_text(self) -> str:
        return "\n".join(self.lines)

    def events(self, message: str) -> list[tuple[datetime, dict]]:
        found = []
        for line in list(self.lines):
            match = LOG_LINE.match(line)
            if match and match.group(3).startswith(message):
                when = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
                fields = {k: v.strip('"') for k, v in FIELD.findall(match.group(3))}
                found.append((when, fields))
        return found

    def wait_for(self, message: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events(message)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {count} x {message!r} within {timeout}s")
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def check_topics(port: int, messages: int, size: int) -> int:
    """Subscribes to a few topics one by one and checks their retained payloads."""
    conn = Connection(port, "bench-check")
    checked = 0
    for n in sorted({0, messages // 3, messages // 2, messages - 1}):
        conn.sock.sendall(subscribe_packet(topic_of(n), packet_id=n % 60000 + 1))
        got = None
        while got is None:
            first, body = conn.read_packet()
            if first & 0xF0 == 0x30:
                got = body[2 + len(topic_of(n)):]
        if got != payload_of(n, size):
            raise RuntimeError(f"{topic_of(n)!r}: restored {got[:40]!r}")
        checked += 1
    conn.close()
    return checked


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def loadtest_run(loadtest: Path, port: int, args, rate: int, out: Path) -> dict:
    """One `hydrant-loadtest fanout` run at QoS 1 with persistent subscribers; its JSON."""
    import json
    command = [str(loadtest), "fanout", "--port", str(port), "--qos", "1",
               "--persistent-subscribers", "--publishers", str(args.publishers),
               "--subscribers", str(args.subscribers), "--size", str(args.payload),
               "--rate", str(rate), "--duration", f"{args.seconds}s", "--warmup", "2s",
               "--json", str(out), "--quiet"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


class MosquittoProcess:
    """Mosquitto on a free loopback port, with persistence in `work` or without."""

    def __init__(self, work: Path, persistence: bool):
        with socket.socket() as probe_socket:
            probe_socket.bind(("127.0.0.1", 0))
            self.port = probe_socket.getsockname()[1]
        store = work / "mosquitto"
        store.mkdir(parents=True, exist_ok=True)
        # Mosquitto started as root drops to its own user, which must reach the store.
        store.chmod(0o777)
        work.chmod(0o755)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        if persistence:
            lines += ["persistence true", f"persistence_location {store}/"]
        config = work / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o644)
        self.process = subprocess.Popen(["mosquitto", "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        BrokerProcess.started_processes.append(self.process)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("mosquitto did not start")
                time.sleep(0.1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def sessions_benchmark(args, binary: Path, loadtest: Path) -> int:
    """QoS 1 to persistent sessions under each durability policy (see the module doc)."""
    rows = []
    for policy in ("off", "never", "interval", "always"):
        work = Path(tempfile.mkdtemp(prefix="hydrant-bench-sessions-"))
        config = work / "hydrant.toml"
        persistence = ("[persistence]\npersistence = false\n" if policy == "off" else
                       "[persistence]\npersistence = true\n"
                       f"persistence_location = \"{work / 'data'}\"\nsync = \"{policy}\"\n")
        config.write_text(persistence)
        try:
            for pace in (0, args.paced_rate):
                broker = BrokerProcess(binary, config, args.cores)
                load = f"{os.getloadavg()[0]:.2f}"
                report = loadtest_run(loadtest, broker.port, args, pace, work / "run.json")
                usage = directory_bytes(work / "data") if policy != "off" else 0
                broker.kill()
                shutil.rmtree(work / "data", ignore_errors=True)
                messages, latency = report["messages"], report["latency"]
                rows.append((policy, pace, messages["sent_per_s"], messages["delivered_per_s"],
                             latency["p50_ms"], latency["p99_ms"], messages["lost"],
                             messages["duplicated"], usage, load))
        finally:
            BrokerProcess.kill_all_started()
            shutil.rmtree(work, ignore_errors=True)
    if shutil.which("mosquitto") is None:
        print("mosquitto not found: its rows are left out (scripts/install-test-deps.sh "
              "installs it)", file=sys.stderr)
    else:
        for persistence in (False, True):
            work = Path(tempfile.mkdtemp(prefix="hydrant-bench-mosquitto-"))
            try:
                for pace in (0, args.paced_rate):
                    broker = MosquittoProcess(work, persistence)
                    load = f"{os.getloadavg()[0]:.2f}"
                    report = loadtest_run(loadtest, broker.port, args, pace, work / "run.json")
                    usage = directory_bytes(work / "mosquitto")
                    broker.kill()
                    messages, latency = report["messages"], report["latency"]
                    name = "Mosquitto, persistence " + ("on" if persistence else "off")
                    rows.append((name, pace, messages["sent_per_s"], messages["delivered_per_s"],
                                 latency["p50_ms"], latency["p99_ms"], messages["lost"],
                                 messages["duplicated"], usage, load))
            finally:
                BrokerProcess.kill_all_started()
                shutil.rmtree(work, ignore_errors=True)
    print(f"\n## QoS 1 to persistent sessions ({args.publishers} publishers, "
          f"{args.subscribers} subscribers with clean session 0, {args.payload}-byte payloads, "
          f"{args.cores} cores, {args.seconds} s measured)\n")
    print(f"- machine: {machine()}\n")
    print("| persistence | rate per publisher | published/s | delivered/s | p50 | p99 | lost "
          "| duplicated | files after | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for policy, pace, sent, delivered, p50, p99, lost, duplicated, usage, load in rows:
        rate = "unpaced" if pace == 0 else f"{pace}/s"
        print(f"| {policy} | {rate} | {sent:,.0f} | {delivered:,.0f} | {p50:.1f} ms | "
              f"{p99:.1f} ms | {lost} | {duplicated} | {usage:,} B | {load} |")
    return 0


def leave_sessions(port: int, first: int, last: int, results) -> None:
    """Persistent subscribers `first..last` of `stall/all` at QoS 1, each then gone offline."""
    for n in range(first, last):
        conn = Connection(port, f"stall-sub-{n}", clean=False)
        conn.sock.sendall(subscribe_packet(b"stall/all", qos=1))
        first_byte, _ = conn.read_packet()
        if first_byte != 0x90:
            raise RuntimeError(f"stall-sub-{n}: no SUBACK")
        conn.close()
    results.put(last - first)


def publish_acknowledged(conn: Connection, topic: bytes, payload: bytes, qos: int,
                         retain: bool, packet_id: int) -> None:
    """One PUBLISH, then its PUBACK (QoS 1)."""
    conn.sock.sendall(publish_packet(topic, payload, qos=qos, retain=retain, packet_id=packet_id))
    while qos:
        first, _ = conn.read_packet()
        if first == 0x40:
            return


def stall_benchmark(args, binary: Path) -> int:
    """The longest compaction stall with persistent sessions holding queued messages."""
    sessions, queued = args.stall_sessions, args.queued
    work = Path(tempfile.mkdtemp(prefix="hydrant-bench-stall-"))
    config = work / "hydrant.toml"
    config.write_text(
        "[limits]\n"
        f"max_queued_messages = {queued + 10}\n"
        "[session]\n"
        f"max_offline_sessions = {sessions + 10}\n"
        "[persistence]\n"
        "persistence = true\n"
        f"persistence_location = \"{work / 'data'}\"\n"
        f"sync = \"{args.sync}\"\n"
        f"autosave_log_bytes = {args.autosave}\n")
    try:
        broker = BrokerProcess(binary, config, args.cores)
        started = time.monotonic()
        results = multiprocessing.Queue()
        share = sessions // args.connections
        workers = []
        for c in range(args.connections):
            last = sessions if c == args.connections - 1 else (c + 1) * share
            worker = multiprocessing.Process(target=leave_sessions,
                                             args=(broker.port, c * share, last, results))
            worker.start()
            workers.append(worker)
        left = sum(results.get(timeout=READY_TIMEOUT) for _ in workers)
        for worker in workers:
            worker.join()
        publisher = Connection(broker.port, "stall-pub")
        for n in range(queued):
            publish_acknowledged(publisher, b"stall/all", payload_of(n, args.payload), 1, False,
                                 n % 60000 + 1)
        filled = time.monotonic() - started
        # Every session now holds its queue: once a compaction started during the fill has
        # ended, grow the log until each core compacts again.
        time.sleep(2.0)
        before = len(broker.events("persistence compacted"))
        filler = payload_of(0, 16 * 1024)
        deadline = time.monotonic() + READY_TIMEOUT
        n = 0
        while len(broker.events("persistence compacted")) < before + args.cores:
            if time.monotonic() > deadline:
                raise RuntimeError("no compaction after the fill")
            publish_acknowledged(publisher, f"stall/filler/{n % 64}".encode(), filler, 1, True,
                                 n % 60000 + 1)
            n += 1
        time.sleep(0.5)
        publisher.close()
        compactions = broker.events("persistence compacted")
        broker.kill()
    finally:
        BrokerProcess.kill_all_started()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n## Compaction stall with {left:,} persistent sessions x {queued} queued messages "
          f"({args.payload}-byte payloads, {args.cores} cores, sync = \"{args.sync}\")\n")
    print(f"- machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"- sessions made and filled in {filled:.1f} s; {n} retained fillers to trigger")
    for when, fields in compactions[before:]:
        print(f"  - core {fields['core']}: {fields['records']} records, "
              f"{fields['snapshot_bytes']} bytes, {fields['elapsed_ms']} ms, longest slice "
              f"{fields['longest_slice_us']} us (session copy {fields.get('session_copy_us', '?')}"
              f" us), {fields['slices']} slices")
    print(f"- longest compaction slice with the sessions: "
          f"{max(int(f['longest_slice_us']) for _, f in compactions[before:])} us")
    return 0


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--sync", default="interval", choices=["always", "interval", "never"])
    parser.add_argument("--autosave", type=int, default=16 * 1024 * 1024,
                        help="autosave_log_bytes (compaction trigger), default 16 MiB")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the files go (default: a new directory under $TMPDIR)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--sessions", action="store_true",
                        help="measure QoS 1 to persistent sessions under each sync policy")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--paced-rate", type=int, default=200,
                        help="messages per second per publisher of the paced runs")
    parser.add_argument("--stall-sessions", type=int, default=0,
                        help="measure the compaction stall with this many persistent sessions")
    parser.add_argument("--queued", type=int, default=10,
                        help="messages queued for each of --stall-sessions")
    args = parser.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "release" / "hydrant"
    if not args.no_build:
        print("building the release broker", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "hydrant", "-p", "hydrant"],
                       cwd=ROOT, check=True)
        if args.sessions:
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "hydrant-loadtest"],
                           cwd=ROOT, check=True)
    if args.sessions:
        return sessions_benchmark(args, binary, target / "release" / "hydrant-loadtest")
    if args.stall_sessions:
        return stall_benchmark(args, binary)
    work = Path(tempfile.mkdtemp(prefix="hydrant-bench-persistence-"))
    data = args.dir or work / "data"
    config = work / "hydrant.toml"
    config.write_text(
        "[limits]\n"
        f"max_retained_messages = {args.messages + 1000}\n"
        "max_retained_bytes = 4294967296\n"
        "[persistence]\n"
        "persistence = true\n"
        f"persistence_location = \"{data}\"\n"
        f"sync = \"{args.sync}\"\n"
        f"autosave_log_bytes = {args.autosave}\n")
    filesystem = subprocess.run(["df", "-T", str(work)], capture_output=True, text=True).stdout
    print(f"machine: {machine()}\nfiles in {data}:\n{filesystem}", file=sys.stderr)

    try:
        broker = BrokerProcess(binary, config, args.cores)
        print(f"empty start-up: {broker.ready_after:.3f} s", file=sys.stderr)
        stop_probe = multiprocessing.Event()
        probe_results = multiprocessing.Queue()
        probe_process = multiprocessing.Process(target=probe,
                                                args=(broker.port, stop_probe, probe_results))
        probe_process.start()
        time.sleep(0.5)
        fill_results = multiprocessing.Queue()
        share = args.messages // args.connections
        fillers = []
        started = time.monotonic()
        for c in range(args.connections):
            last = args.messages if c == args.connections - 1 else (c + 1) * share
            filler = multiprocessing.Process(target=fill, args=(
                broker.port, c * share, last, args.payload, f"filler-{c}", fill_results))
            filler.start()
            fillers.append(filler)
        done = [fill_results.get(timeout=READY_TIMEOUT) for _ in fillers]
        for filler in fillers:
            filler.join()
        filled = max(at for _, at in done) - started
        time.sleep(1.0)
        stop_probe.set()
        probe_samples = probe_results.get(timeout=60)
        probe_process.join()
        compactions = broker.events("persistence compacted")
        files_after_fill = directory_bytes(data)
        broker.kill()

        # Round trips of the probe during each compaction, and outside them.
        windows = []
        for end, fields in compactions:
            elapsed = int(fields["elapsed_ms"]) / 1000
            windows.append((end.timestamp() - elapsed, end.timestamp(), fields))
        inside, outside = [], []
        for at, rtt in probe_samples:
            (inside if any(a <= at <= b for a, b, _ in windows) else outside).append(rtt)

        restart = BrokerProcess(binary, config, args.cores)
        restart.wait_for("retained messages restored", args.cores, timeout=30)
        restored = restart.events("retained messages restored")
        stored = sum(int(fields["stored"]) for _, fields in restored)
        checked = check_topics(restart.port, args.messages, args.payload)
        # Give a compaction advised by recovery (several logs per core) time to run, then stop.
        try:
            restart.wait_for("persistence compacted", args.cores, timeout=15)
        except RuntimeError:
            pass
        restart.stop()
        third = BrokerProcess(binary, config, args.cores)
        third.wait_for("retained messages restored", args.cores, timeout=30)
        third_restored = sum(int(f["stored"]) for _, f in third.events("retained messages restored"))
        files_compacted = directory_bytes(data)
        third.stop()
    finally:
        BrokerProcess.kill_all_started()
        shutil.rmtree(work, ignore_errors=True)

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms"

    print(f"\n## Persistence ({args.messages} retained messages of {args.payload} bytes, "
          f"{args.cores} cores, sync = \"{args.sync}\")\n")
    print(f"- machine: {machine()}")
    print(f"- fill through the broker: {args.connections} connections, {filled:.1f} s "
          f"({args.messages / filled:,.0f} retained publishes/s); files {files_after_fill:,} bytes")
    print(f"- compactions during the fill: {len(compactions)}")
    for start, end, fields in windows:
        print(f"  - core {fields['core']}: {fields['records']} records, "
              f"{fields['snapshot_bytes']} bytes, {fields['elapsed_ms']} ms, longest slice "
              f"{fields['longest_slice_us']} us, {fields['slices']} slices")
    if compactions:
        print(f"- longest compaction slice: "
              f"{max(int(f['longest_slice_us']) for _, _, f in windows)} us")
    for name, samples in (("during compactions", inside), ("outside compactions", outside)):
        if samples:
            samples = sorted(samples)
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
            print(f"- probe round trip {name}: {len(samples)} samples, median "
                  f"{ms(statistics.median(samples))}, p99 {ms(p99)}, max {ms(samples[-1])}")
    print(f"- start-up after kill -9: {restart.ready_after:.2f} s to ready; "
          f"{stored:,} retained messages restored; {checked} topics checked")
    for line in [l for l in restart.lines if "persistence recovered" in l or
                 "retained messages restored" in l]:
        print(f"  - {line.split(': ', 1)[-1]}")
    print(f"- start-up after a clean stop: {third.ready_after:.2f} s to ready; "
          f"{third_restored:,} restored; files {files_compacted:,} bytes")
    for line in [l for l in third.lines if "persistence recovered" in l]:
        print(f"  - {line.split(': ', 1)[-1]}")
    if stored != args.messages or third_restored != args.messages:
        print(f"MISMATCH: {args.messages} published, {stored} and {third_restored} restored")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
