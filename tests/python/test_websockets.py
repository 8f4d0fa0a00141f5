"""MQTT over WebSockets (`protocol = "ws"` and `"wss"`), with the clients people use: MQTT.js
(the library browsers use, run by node from tests/js) and paho-mqtt's websocket transport, plus
a hand-written RFC 6455 client for what those libraries never do on purpose: MQTT packets split
and joined across frames, fragmented messages, ping/pong, the close handshake, the subprotocol
and Origin checks and the HTTP answers to a bad upgrade request."""

import base64
import hashlib
import json
import os
import queue
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from hydrant_process import REPO_ROOT, listener_toml
from paho_client import MQTT_3_1_1, MQTT_5
from tls_material import CertificateAuthority

JS_CLIENT = REPO_ROOT / "tests" / "js" / "mqtt_client.js"
NODE_EVENT_TIMEOUT = 10.0
NODE_EXIT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 5.0
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BIG_PAYLOAD = os.urandom(300_000)


@pytest.fixture
def ca(tmp_path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


def ws_config(ca, **ws_keys) -> str:
    """A plain listener (the `--bind` one), a ws and a wss listener sharing `ws_keys`."""
    server = ca.issue_server()
    return (listener_toml("mqtt") + listener_toml("ws", **ws_keys)
            + listener_toml("wss", certfile=server.cert, keyfile=server.key, **ws_keys))


def tls_options(transport: str, ca) -> dict:
    return {"ca_file": ca.ca_file} if transport == "wss" else {}


# ---- MQTT.js, driven through tests/js/mqtt_client.js ---------------------------------------

class NodeClient:
    """An MQTT.js client in a node process: commands go to its stdin, events come back as JSON
    lines on its stdout (see tests/js/mqtt_client.js)."""

    def __init__(self, url: str, client_id: str, **options):
        node = shutil.which("node")
        if node is None or not (JS_CLIENT.parent / "node_modules" / "mqtt").is_dir():
            pytest.fail("node or tests/js/node_modules/mqtt is missing: run "
                        "scripts/install-test-deps.sh", pytrace=False)
        self.client_id = client_id
        self.events: queue.Queue[dict] = queue.Queue()
        self.messages: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        settings = {"url": url, "clientId": client_id, "lifetimeMs": 60_000, **options}
        self.process = subprocess.Popen(
            [node, str(JS_CLIENT), json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=JS_CLIENT.parent,
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "unparsed", "line": line.rstrip("\n")}
            self.seen.append(event)
            if event.get("event") == "message":
                self.messages.put(event)
            else:
                self.events.put(event)
        self.events.put({"event": "exited"})

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.rstrip("\n"))

    def send(self, **command) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def wait_event(self, kind: str, timeout: float = NODE_EVENT_TIMEOUT) -> dict:
        """The next event of `kind`; fails on a timeout, or on an error or close first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise AssertionError(
                    f"MQTT.js {self.client_id!r}: no {kind!r} event within {timeout}s; "
                    f"events: {self.seen}; stderr: {self.stderr}") from None
            if event["event"] == kind:
                return event
            if event["event"] in ("error", "close", "exited"):
                raise AssertionError(
                    f"MQTT.js {self.client_id!r}: {event} while waiting for {kind!r}; "
                    f"events: {self.seen}; stderr: {self.stderr}")

    def wait_refused(self, timeout: float = NODE_EVENT_TIMEOUT) -> list[dict]:
        """Waits until the connection fails (an error or close event) without a connect."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise AssertionError(
                    f"MQTT.js {self.client_id!r}: neither connected nor refused within "
                    f"{timeout}s; events: {self.seen}") from None
            if event["event"] == "connect":
                raise AssertionError(f"MQTT.js {self.client_id!r} connected: {self.seen}")
            if event["event"] in ("error", "close", "exited"):
                return list(self.seen)

    def subscribe(self, topic_filter: str, qos: int) -> list[int]:
        self.send(op="subscribe", filter=topic_filter, qos=qos)
        return self.wait_event("suback")["granted"]

    def publish(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> dict:
        self.send(op="publish", topic=topic, payload=payload, qos=qos, retain=retain)
        return self.wait_event("published")

    def expect_message(self, timeout: float = NODE_EVENT_TIMEOUT) -> dict:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"MQTT.js {self.client_id!r}: no message within {timeout}s; events: "
                f"{self.seen}; stderr: {self.stderr}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send(op="end")
                self.process.wait(timeout=NODE_EXIT_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.process.kill()
                self.process.wait(timeout=NODE_EXIT_TIMEOUT)


@pytest.fixture
def node_clients(broker_factory):
    """Starts MQTT.js clients; ends each (or kills it) before the brokers stop."""
    started: list[NodeClient] = []

    def start(url: str, client_id: str, **options) -> NodeClient:
        client = NodeClient(url, client_id, **options)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


def js_url(transport: str, port: int, path: str = "/mqtt") -> str:
    return f"{transport}://127.0.0.1:{port}{path}"


# ---- a hand-written RFC 6455 client --------------------------------------------------------

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def mqtt_packet(first_byte: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        digit, length = length % 128, length // 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes([first_byte]) + bytes(encoded) + body


def mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_311(client_id: str) -> bytes:
    return mqtt_packet(0x10, mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
                       + mqtt_string(client_id))


def subscribe_311(packet_id: int, topic_filter: str, qos: int) -> bytes:
    return mqtt_packet(0x82, struct.pack("!H", packet_id) + mqtt_string(topic_filter)
                       + bytes([qos]))


def publish_qos0(topic: str, payload: bytes) -> bytes:
    return mqtt_packet(0x30, mqtt_string(topic) + payload)


class RawWebSocket:
    """One WebSocket connection made by hand: the upgrade request, then frames."""

    def __init__(self, port: int, path: str = "/mqtt", protocols: tuple = ("mqtt",),
                 origin: str | None = None, ca_file=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.buffer = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        request = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                   "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                   "Sec-WebSocket-Version: 13"]
        if protocols:
            request.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
        if origin is not None:
            request.append(f"Origin: {origin}")
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == expected, self.headers

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer.extend(chunk)
        return bool(chunk)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed before {marker!r}: {bytes(self.buffer)!r}")
        end = self.buffer.index(marker) + len(marker)
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    def _read_exact(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise AssertionError(
                    f"connection closed with {len(self.buffer)} of {count} bytes read")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> None:
        header = bytearray([(0x80 if fin else 0) | opcode])
        mask_bit = 0x80 if mask else 0
        if len(payload) < 126:
            header.append(mask_bit | len(payload))
        elif len(payload) < 65536:
            header.append(mask_bit | 126)
            header += struct.pack("!H", len(payload))
        else:
            header.append(mask_bit | 127)
            header += struct.pack("!Q", len(payload))
        if mask:
            key = os.urandom(4)
            header += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + payload)

    def recv_frame(self) -> tuple[bool, int, bytes]:
        """The next frame from the server: (fin, opcode, payload). Servers never mask."""
        first, second = self._read_exact(2)
        assert not second & 0x80, "the server masked a frame (RFC 6455 5.1 forbids it)"
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read_exact(8))[0]
        return bool(first & 0x80), first & 0x0F, self._read_exact(length)

    def recv_mqtt(self, stream: bytearray) -> tuple[int, bytes]:
        """The next MQTT packet (first byte, body) from the binary frames, which may split or
        join packets arbitrarily; `stream` keeps bytes of the next packets between calls."""
        while True:
            if len(stream) >= 2:
                length, multiplier, index = 0, 1, 1
                while index < len(stream):
                    byte = stream[index]
                    length += (byte & 0x7F) * multiplier
                    multiplier *= 128
                    index += 1
                    if not byte & 0x80:
                        if len(stream) >= index + length:
                            packet = (stream[0], bytes(stream[index:index + length]))
                            del stream[:index + length]
                            return packet
                        break
            _fin, opcode, payload = self.recv_frame()
            assert opcode in (OP_BINARY, OP_CONTINUATION), (
                f"expected a binary frame, got opcode {opcode} ({payload!r})")
            stream.extend(payload)

    def expect_closed(self) -> None:
        """Reads until the server closes the TCP connection (within the socket timeout)."""
        while self._fill():
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def raw_sockets():
    opened: list[RawWebSocket] = []

    def open_socket(*args, **kwargs) -> RawWebSocket:
        connection = RawWebSocket(*args, **kwargs)
        opened.append(connection)
        return connection

    yield open_socket
    for connection in opened:
        connection.close()


# ---- paho-mqtt's websocket transport --------------------------------------------------------

@pytest.mark.parametrize("protocol", [MQTT_3_1_1, MQTT_5], ids=["3.1.1", "5"])
@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_paho_over_websockets(broker_factory, clients, ca, transport, protocol):
    broker = broker_factory(ws_config(ca))
    web = clients.connect_via(broker.port_of(transport), f"paho-{transport}",
                              transport=transport, protocol=protocol,
                              **tls_options(transport, ca))
    plain = clients.connect(broker.port, "plain-peer")
    web.subscribe_many([("web/in", 1)])
    plain.subscribe("web/out", qos=1)

    for payload in (b"small", BIG_PAYLOAD):
        plain.publish("web/in", payload, qos=1)
        received = web.expect_message()
        assert (received.topic, received.payload) == ("web/in", payload)
        web.publish("web/out", payload, qos=1)
        received = plain.expect_message()
        assert (received.topic, received.payload) == ("web/out", payload)


def test_paho_on_a_wrong_path_is_refused(broker_factory, clients, ca):
    broker = broker_factory(ws_config(ca))
    for transport in ("ws", "wss"):
        wrong = clients.connect_via(broker.port_of(transport), f"wrong-{transport}",
                                    transport=transport, ws_path="/not-mqtt",
                                    expect_success=False, **tls_options(transport, ca))
        assert wrong.refused and wrong.connect_error is not None
        clients.connect_via(broker.port_of(transport), f"right-{transport}",
                            transport=transport, **tls_options(transport, ca))


# ---- MQTT.js ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5, 3], ids=["3.1.1", "5", "3.1"])
@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_mqtt_js_over_websockets(broker_factory, clients, node_clients, ca, transport,
                                 version):
    broker = broker_factory(ws_config(ca))
    extra = {"ca": str(ca.ca_file)} if transport == "wss" else {}
    js = node_clients(js_url(transport, broker.port_of(transport)), f"js-{transport}-{version}",
                      protocolVersion=version, **extra)
    js.wait_event("connect")
    plain = clients.connect(broker.port, "plain-peer")
    plain.subscribe("js/out", qos=1)

    assert js.subscribe("js/in", 1) == [1]
    plain.publish("js/in", b"hello browser", qos=1)
    message = js.expect_message()
    assert (message["topic"], message["payload"], message["qos"]) == ("js/in", "hello browser", 1)

    published = js.publish("js/out", "hello broker", qos=1)
    assert published["reasonCode"] == 0
    received = plain.expect_message()
    assert (received.topic, received.payload) == ("js/out", b"hello broker")

    big = "x" * 200_000
    plain.publish("js/in", big.encode(), qos=0)
    assert js.expect_message()["payload"] == big


def test_mqtt_js_on_a_wrong_path_is_refused(broker_factory, node_clients, ca):
    broker = broker_factory(ws_config(ca))
    js = node_clients(js_url("ws", broker.port_of("ws"), "/elsewhere"), "js-wrong-path",
                      connectTimeoutMs=3000)
    js.wait_refused()
    secure = node_clients(js_url("wss", broker.port_of("wss"), "/elsewhere"), "jss-wrong-path",
                          connectTimeoutMs=3000, ca=str(ca.ca_file))
    secure.wait_refused()


def test_custom_websocket_path(broker_factory, clients, node_clients, raw_sockets, ca):
    broker = broker_factory(ws_config(ca, websocket_path="/firehose"))
    ws_port = broker.port_of("ws")
    assert raw_sockets(ws_port, "/mqtt").status == 404
    assert raw_sockets(ws_port, "/firehose").status == 101
    clients.connect_via(ws_port, "paho-custom-path", transport="ws", ws_path="/firehose")
    js = node_clients(js_url("wss", broker.port_of("wss"), "/firehose"), "js-custom-path",
                      ca=str(ca.ca_file))
    js.wait_event("connect")


# ---- the upgrade request -------------------------------------------------------------------

def test_wrong_path_gets_http_404(broker_factory, raw_sockets, ca):
    broker = broker_factory(ws_config(ca))
    assert raw_sockets(broker.port_of("ws"), "/nope").status == 404
    assert raw_sockets(broker.port_of("wss"), "/nope", ca_file=ca.ca_file).status == 404
    assert raw_sockets(broker.port_of("ws"), "/mqtt").status == 101


@pytest.mark.parametrize("offered,chosen", [
    (("mqtt",), "mqtt"),
    (("mqttv3.1",), "mqttv3.1"),
    (("chat", "mqtt"), "mqtt"),
])
def test_mqtt_subprotocol_is_chosen(broker_factory, raw_sockets, ca, offered, chosen):
    broker = broker_factory(ws_config(ca))
    upgrade = raw_sockets(broker.port_of("ws"), protocols=offered)
    assert upgrade.status == 101, upgrade.status_line
    assert upgrade.headers.get("sec-websocket-protocol") == chosen


@pytest.mark.parametrize("offered", [(), ("chat",)], ids=["none", "chat"])
def test_upgrade_without_the_mqtt_subprotocol_is_refused(broker_factory, raw_sockets, ca,
                                                         offered):
    broker = broker_factory(ws_config(ca))
    upgrade = raw_sockets(broker.port_of("ws"), protocols=offered)
    assert upgrade.status != 101, f"upgraded without the mqtt subprotocol: {upgrade.headers}"
    assert 400 <= upgrade.status < 500


def test_allowed_origins(broker_factory, clients, raw_sockets, ca):
    broker = broker_factory(ws_config(ca, websocket_origins=["https://a.example",
                                                             "https://b.example"]))
    ws_port = broker.port_of("ws")
    assert raw_sockets(ws_port, origin="https://a.example").status == 101
    assert raw_sockets(ws_port, origin="https://b.example").status == 101
    assert raw_sockets(ws_port, origin="https://evil.example").status == 403
    assert raw_sockets(ws_port, origin="https://a.example.evil").status == 403
    assert raw_sockets(ws_port, origin=None).status == 403
    assert raw_sockets(broker.port_of("wss"), origin="https://evil.example",
                       ca_file=ca.ca_file).status == 403
    # paho sends `Origin: http://127.0.0.1:PORT`, which is not in the list.
    refused = clients.connect_via(ws_port, "paho-bad-origin", transport="ws",
                                  expect_success=False)
    assert refused.refused
    clients.connect_via(ws_port, "paho-good-origin", transport="ws",
                        ws_headers={"Origin": "https://b.example"})


def test_any_origin_is_allowed_by_default(broker_factory, raw_sockets, ca):
    broker = broker_factory(ws_config(ca))
    assert raw_sockets(broker.port_of("ws"), origin="https://anything.example").status == 101
    assert raw_sockets(broker.port_of("ws"), origin=None).status == 101


# ---- frames --------------------------------------------------------------------------------

def test_packets_split_joined_and_fragmented_across_frames(broker_factory, raw_sockets, ca):
    broker = broker_factory(ws_config(ca))
    ws = raw_sockets(broker.port_of("ws"))
    assert ws.status == 101
    stream = bytearray()

    connect = connect_311("raw-frames")
    for piece in (connect[:1], connect[1:5], connect[5:]):  # one packet, three messages
        ws.send_frame(OP_BINARY, piece)
    assert ws.recv_mqtt(stream) == (0x20, b"\x00\x00")

    # SUBSCRIBE and the first PUBLISH joined in one message.
    ws.send_frame(OP_BINARY, subscribe_311(1, "frames/#", 0) + publish_qos0("frames/a", b"one"))
    assert ws.recv_mqtt(stream) == (0x90, b"\x00\x01\x00")
    assert ws.recv_mqtt(stream) == (0x30, mqtt_string("frames/a") + b"one")

    # One PUBLISH as a fragmented message, with a ping between its fragments.
    second = publish_qos0("frames/b", b"two")
    ws.send_frame(OP_BINARY, second[:4], fin=False)
    ws.send_frame(OP_PING, b"between fragments")
    ws.send_frame(OP_CONTINUATION, second[4:7], fin=False)
    ws.send_frame(OP_CONTINUATION, second[7:], fin=True)
    fin, opcode, payload = ws.recv_frame()
    assert (fin, opcode, payload) == (True, OP_PONG, b"between fragments")
    assert ws.recv_mqtt(stream) == (0x30, mqtt_string("frames/b") + b"two")

    # A message holding the end of one packet and the start of the next.
    third, fourth = publish_qos0("frames/c", b"three"), publish_qos0("frames/d", b"four")
    joined = third + fourth
    ws.send_frame(OP_BINARY, joined[:len(third) + 3])
    ws.send_frame(OP_BINARY, joined[len(third) + 3:])
    assert ws.recv_mqtt(stream) == (0x30, mqtt_string("frames/c") + b"three")
    assert ws.recv_mqtt(stream) == (0x30, mqtt_string("frames/d") + b"four")


def test_ping_is_answered_and_close_is_echoed(broker_factory, raw_sockets, ca):
    broker = broker_factory(ws_config(ca))
    ws = raw_sockets(broker.port_of("ws"))
    stream = bytearray()
    ws.send_frame(OP_BINARY, connect_311("raw-close"))
    assert ws.recv_mqtt(stream) == (0x20, b"\x00\x00")
    ws.send_frame(OP_PING, b"are you there")
    assert ws.recv_frame() == (True, OP_PONG, b"are you there")

    mark = broker.log_mark()
    ws.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
    fin, opcode, payload = ws.recv_frame()
    assert (fin, opcode) == (True, OP_CLOSE)
    assert len(payload) >= 2 and struct.unpack("!H", payload[:2])[0] == 1000
    ws.expect_closed()
    broker.wait_for_disconnect("raw-close", since=mark)


def test_secure_websocket_frames(broker_factory, raw_sockets, ca):
    broker = broker_factory(ws_config(ca))
    wss = raw_sockets(broker.port_of("wss"), ca_file=ca.ca_file)
    assert wss.status == 101
    stream = bytearray()
    wss.send_frame(OP_BINARY, connect_311("raw-wss") + subscribe_311(7, "wss/raw", 0))
    assert wss.recv_mqtt(stream) == (0x20, b"\x00\x00")
    assert wss.recv_mqtt(stream) == (0x90, b"\x00\x07\x00")
    wss.send_frame(OP_BINARY, publish_qos0("wss/raw", b"x" * 70_000))
    assert wss.recv_mqtt(stream) == (0x30, mqtt_string("wss/raw") + b"x" * 70_000)


def test_text_frame_closes_only_that_connection(broker_factory, clients, raw_sockets, ca):
    broker = broker_factory(ws_config(ca))
    healthy = clients.connect_via(broker.port_of("ws"), "ws-healthy", transport="ws")
    healthy.subscribe("healthy/ws", qos=1)
    ws = raw_sockets(broker.port_of("ws"))
    stream = bytearray()
    ws.send_frame(OP_BINARY, connect_311("ws-texter"))
    assert ws.recv_mqtt(stream) == (0x20, b"\x00\x00")
    ws.send_frame(OP_TEXT, b"\x30\x05\x00\x01ahi")
    while True:  # a close frame (1003 or 1002) may come first; then the socket closes
        try:
            _fin, opcode, _payload = ws.recv_frame()
        except TimeoutError:
            raise AssertionError("the connection stayed open after a text frame") from None
        except (AssertionError, OSError):
            break
        assert opcode == OP_CLOSE, f"unexpected opcode {opcode} after a text frame"
    healthy.publish("healthy/ws", b"still here", qos=1)
    assert healthy.expect_message().payload == b"still here"
