"""A hydrant broker run as a child process, observed through its stdout and stderr.

The broker is started on 127.0.0.1 port 0 and announces its ports and readiness on stdout
(see the broker contract: `hydrant: listening on ADDR (PROTOCOL)` once per listener, e.g.
`(mqtt)`, `(mqtt+tls)`, `(ws)`, `(wss)`, then `hydrant: ready (N cores)`).
Its stderr (tracing logs) is collected by a thread so tests can wait for log lines.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / "target" / "debug" / "hydrant"

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

_LISTENING = re.compile(r"^hydrant: listening on (\S+):(\d+) \(([a-z0-9+]+)\)$")
_READY = re.compile(r"^hydrant: ready \((\d+) cores?\)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


class BrokerError(AssertionError):
    """The broker could not be started, misbehaved, or a log line never appeared."""


def broker_binary() -> Path:
    """The broker to test: $HYDRANT_BIN, else target/debug/hydrant of this repository."""
    configured = os.environ.get("HYDRANT_BIN")
    path = Path(configured) if configured else DEFAULT_BINARY
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BrokerError(
            f"hydrant binary not found or not executable at {path}: "
            "run `cargo build --bins` first, or set HYDRANT_BIN to the broker to test"
        )
    return path


def log_fields(line: str) -> dict:
    """The `key=value` fields of a tracing log line (quotes around values removed)."""
    return {key: value.strip('"') for key, value in _FIELD.findall(line)}


def toml_value(value) -> str:
    """A Python value (bool, int, str, path, list of those) written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def listener_toml(protocol: str = "mqtt", bind: str = "127.0.0.1:0", **keys) -> str:
    """One `[[listener]]` table: its transport, a loopback address with a free port (unless
    `bind` says otherwise) and any other listener keys (`certfile=path`, `acl_file=path`,
    `allow_anonymous=False`, ...)."""
    lines = ["[[listener]]", f"bind = {toml_value(bind)}", f"protocol = {toml_value(protocol)}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


class Broker:
    """A running hydrant process: its port, its logs, and a clean SIGTERM shutdown."""

    def __init__(self, binary: Path, cores: int = 2, config: Path | None = None,
                 extra_args: tuple = ()):
        self.args = [str(binary), "--bind", "127.0.0.1:0", "--cores", str(cores)]
        if config is not None:
            self.args += ["--config", str(config)]
        self.args += list(extra_args)
        self.cores = cores
        self.port: int | None = None
        self.ports: dict[str, list[int]] = {}
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self._ready = False
        self._stdout_closed = False
        env = dict(os.environ)
        env["RUST_LOG"] = "info"
        env["RUST_BACKTRACE"] = "1"
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._wait_ready()

    def _read_stdout(self) -> None:
        for raw in self.process.stdout:
            line = _ANSI.sub("", raw.rstrip("\n"))
            with self._changed:
                self._stdout.append(line)
                listening = _LISTENING.match(line)
                if listening:
                    port, protocol = int(listening.group(2)), listening.group(3)
                    self.ports.setdefault(protocol, []).append(port)
                    if protocol == "mqtt" and self.port is None:
                        self.port = port
                if _READY.match(line):
                    self._ready = True
                self._changed.notify_all()
        with self._changed:
            self._stdout_closed = True
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        for raw in self.process.stderr:
            with self._changed:
                self._stderr.append(_ANSI.sub("", raw.rstrip("\n")))
                self._changed.notify_all()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        with self._changed:
            while not self._ready:
                exited = self.process.poll() is not None
                remaining = deadline - time.monotonic()
                if exited and self._stdout_closed:
                    break
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.1))
            ready = self._ready
        if not ready:
            status = self.process.poll()
            if status is None:
                problem = f"did not print `hydrant: ready` within {READY_TIMEOUT:.0f}s"
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
            else:
                problem = f"exited with status {status} before printing `hydrant: ready`"
            for reader in self._readers:
                reader.join(timeout=2)
            raise BrokerError(
                f"hydrant {problem}; command: {' '.join(self.args)}\n"
                f"stdout:\n{self.stdout()}\nstderr:\n{self.logs()}"
            )
        if self.port is None:
            self.stop(check=False)
            raise BrokerError(
                "hydrant printed `hydrant: ready` but no `hydrant: listening on "
                f"127.0.0.1:PORT (mqtt)` line before it; stdout:\n{self.stdout()}"
            )

    def port_of(self, protocol: str, index: int = 0) -> int:
        """The port of the `index`-th listener speaking `protocol` (`mqtt`, `mqtt+tls`, `ws`,
        `wss`), from its `hydrant: listening on` line; fails when there is no such listener."""
        with self._changed:
            ports = self.ports.get(protocol, [])
            if index < len(ports):
                return ports[index]
            announced = dict(self.ports)
        raise BrokerError(
            f"no listener #{index} with protocol {protocol!r}; the broker announced {announced}"
            f"; stdout:\n{self.stdout()}"
        )

    def stdout(self) -> str:
        """Everything the broker printed on stdout so far."""
        with self._changed:
            return "\n".join(self._stdout)

    def logs(self) -> str:
        """Everything the broker logged on stderr so far."""
        with self._changed:
            return "\n".join(self._stderr)

    def log_lines(self) -> list[str]:
        """The stderr lines logged so far."""
        with self._changed:
            return list(self._stderr)

    def log_mark(self) -> int:
        """A position in the log: pass it as `since` to wait only for later lines."""
        with self._changed:
            return len(self._stderr)

    def wait_for_log(self, substr: str, timeout: float = 10.0, since: int = 0,
                     count: int = 1) -> str:
        """Waits until `count` stderr lines after `since` contain `substr`; returns the last."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self._stderr[since:] if substr in line]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    break
                self._changed.wait(min(remaining, 0.2))
        status = self.process.poll()
        state = "still running" if status is None else f"exited with status {status}"
        raise BrokerError(
            f"expected {count} log line(s) containing {substr!r} within {timeout}s, "
            f"found {len(found)}; broker {state}. Log:\n{self.logs()}"
        )

    def wait_for_connect(self, client_id: str, timeout: float = 10.0, since: int = 0) -> dict:
        """Waits for the `client connected` line of a client; returns its fields."""
        line = self.wait_for_log(f"client connected client_id={client_id} ", timeout, since)
        return log_fields(line)

    def wait_for_disconnect(self, client_id: str, timeout: float = 10.0, since: int = 0) -> dict:
        """Waits for the `client disconnected` line of a client; returns its fields."""
        line = self.wait_for_log(f"client disconnected client_id={client_id} ", timeout, since)
        return log_fields(line)

    def send_signal(self, signum: int) -> None:
        """Sends a signal (e.g. `signal.SIGHUP`) to the running broker."""
        if self.process.poll() is not None:
            raise BrokerError(
                f"cannot send signal {signum}: hydrant already exited with status "
                f"{self.process.returncode}. Log:\n{self.logs()}"
            )
        self.process.send_signal(signum)

    def reload(self, timeout: float = 10.0) -> str:
        """Sends SIGHUP and waits for the `configuration reloaded` log line it causes; when
        that line names a core (`core=K`, one line per shard), waits for every shard's."""
        mark = self.log_mark()
        self.send_signal(signal.SIGHUP)
        first = self.wait_for_log("configuration reloaded", timeout, since=mark)
        if "core" not in log_fields(first):
            return first
        return self.wait_for_log("configuration reloaded", timeout, since=mark,
                                 count=self.cores)

    def stop(self, check: bool = True) -> int:
        """Sends SIGTERM and waits; with `check`, the broker must exit 0 and not panic."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
                if check:
                    raise BrokerError(
                        f"hydrant did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM; "
                        f"killed it. Log:\n{self.logs()}"
                    )
        for reader in self._readers:
            reader.join(timeout=2)
        status = self.process.returncode
        if check:
            if status != 0:
                raise BrokerError(
                    f"hydrant exited with status {status} after SIGTERM, expected 0. "
                    f"Log:\n{self.logs()}"
                )
            if "panicked" in self.logs():
                raise BrokerError(f"hydrant panicked. Log:\n{self.logs()}")
        return status
