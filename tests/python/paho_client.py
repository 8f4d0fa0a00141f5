"""A blocking test client over paho-mqtt 2.x: every call waits for its acknowledgement.

paho runs its network loop in a thread; this wrapper turns its callbacks into queues and
events so a test reads like a conversation: connect, subscribe (returns the granted QoS),
publish (returns once acknowledged), expect a message, expect silence. With
`protocol=MQTT_5` the MQTT 5 parts are exposed too: CONNECT properties (session expiry among
them) and clean start, the CONNACK's reason code and properties, subscription options, publish
properties, the properties of each received message and the reason code of a DISCONNECT. The
same client runs over every listener transport (plain TCP, TLS, WebSocket, secure WebSocket),
with a user name and password, a client certificate or a pinned TLS version.
"""

import copy
import queue
import ssl
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

MQTT_3_1 = mqtt.MQTTv31
MQTT_3_1_1 = mqtt.MQTTv311
MQTT_5 = mqtt.MQTTv5

ACK_TIMEOUT = 10.0
MESSAGE_TIMEOUT = 5.0
SILENCE = 0.5

# The listener protocols a client can connect over.
TRANSPORTS = ("mqtt", "mqtt+tls", "ws", "wss")


@dataclass(frozen=True)
class Received:
    """One PUBLISH as the subscriber saw it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: object = None


def properties(packet_type: int, **values) -> Properties:
    """MQTT 5 properties for a packet type, e.g. `properties(PacketTypes.CONNECT,
    SessionExpiryInterval=60)`; names are paho's (the specification's without spaces)."""
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def property_dict(props) -> dict:
    """The properties paho received, as a dict keyed by paho's names (empty when none)."""
    return {} if props is None else props.json()


@dataclass(frozen=True)
class Will:
    """The will message a client registers in its CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def _tls_context(ca_file, client_cert, tls_version: ssl.TLSVersion | None) -> ssl.SSLContext:
    """A client TLS context that trusts `ca_file`, presents `client_cert` (when given) and
    offers only `tls_version` (when given)."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    if client_cert is not None:
        context.load_cert_chain(str(client_cert.cert), str(client_cert.key))
    if tls_version is not None:
        context.minimum_version = tls_version
        context.maximum_version = tls_version
    return context


def _with_session_expiry(connect_properties: Properties | None, seconds: int) -> Properties:
    """`connect_properties` (left unchanged) plus a Session Expiry Interval of `seconds`."""
    props = (properties(PacketTypes.CONNECT) if connect_properties is None
             else copy.copy(connect_properties))
    props.SessionExpiryInterval = seconds
    return props


class _PromptClient(mqtt.Client):
    """paho's client with a 0.1 s loop tick instead of 1 s, so PINGREQs leave on time.

    paho checks its keep-alive once per loop tick: with the default 1 s tick a client with
    keep-alive 2 s may ping up to 3 s after its last packet, which is exactly the broker's
    1.5x grace and makes keep-alive tests flaky.
    """

    def _thread_main(self) -> None:
        try:
            self.loop_forever(timeout=0.1, retry_first_connection=True)
        finally:
            self._thread = None


class MqttClient:
    """A connected paho client whose every operation waits for the broker's answer.

    It speaks over any of hydrant's listener transports: `transport` is the listener protocol,
    `mqtt`, `mqtt+tls`, `ws` (paho's websocket transport on `ws_path`, with `ws_headers`) or
    `wss`. For TLS, `ca_file` verifies the broker (its certificate must name 127.0.0.1),
    `client_cert` (an object with `cert` and `key` paths) is presented when given, and
    `tls_version` (an `ssl.TLSVersion`) pins both the lowest and highest version offered.
    """

    def __init__(self, port: int, client_id: str = "", protocol: int = MQTT_3_1_1,
                 clean_session: bool = True, keepalive: int = 60, will: Will | None = None,
                 connect_properties: Properties | None = None,
                 will_properties: Properties | None = None, expect_success: bool = True, *,
                 session_expiry: int | None = None, transport: str = "mqtt",
                 username: str | None = None, password: str | None = None,
                 ca_file=None, client_cert=None, tls_version: ssl.TLSVersion | None = None,
                 ws_path: str = "/mqtt", ws_headers: dict | None = None):
        """Connects and waits for the CONNACK. With MQTT 5, `clean_session` is sent as Clean
        Start, and `session_expiry` (seconds) as the Session Expiry Interval property, added to
        `connect_properties`.

        With `expect_success=False` a refusal is recorded instead of failing: a refusing
        CONNACK in `connack_reason` and `connack_failure`; a connection the broker ends before
        any CONNACK (a TLS handshake failure, a WebSocket upgrade answered with an HTTP error,
        a closed socket) in `connect_error` (the exception, or a description). `refused` is
        true in either case."""
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}")
        if session_expiry is not None and protocol != MQTT_5:
            raise ValueError("session_expiry is an MQTT 5 property")
        self.client_id = client_id
        self.protocol = protocol
        self.transport = transport
        self.messages: queue.Queue[Received] = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self.disconnect_properties = None
        self.connack_failure = False
        self.connack_reason = None
        self.connack_properties = None
        self.connect_error = None
        self.session_present = False
        self._state = threading.Condition()
        self._connected = False
        self._answered = False
        self._acks: dict[int, list[int]] = {}
        self._publish_reasons: dict[int, int] = {}
        # Message ids of the PUBACKs/PUBCOMPs received, in arrival order.
        self.acknowledged: list[int] = []
        self._client = _PromptClient(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if protocol == MQTT_5 else clean_session,
            protocol=protocol,
            transport="websockets" if transport in ("ws", "wss") else "tcp",
            reconnect_on_failure=False,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_publish = self._on_publish
        if username is not None:
            self._client.username_pw_set(username, password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain,
                                  properties=will_properties)
        if transport in ("ws", "wss"):
            self._client.ws_set_options(path=ws_path, headers=ws_headers)
        if transport in ("mqtt+tls", "wss"):
            self._client.tls_set_context(_tls_context(ca_file, client_cert, tls_version))
        if session_expiry is not None:
            connect_properties = _with_session_expiry(connect_properties, session_expiry)
        try:
            if protocol == MQTT_5:
                self._client.connect("127.0.0.1", port, keepalive, clean_start=clean_session,
                                     properties=connect_properties)
            else:
                self._client.connect("127.0.0.1", port, keepalive)
        except OSError as error:
            self.connect_error = error
            self.disconnected.set()
            if expect_success:
                raise AssertionError(
                    f"{client_id!r}: {transport} connection to port {port} failed: {error!r}"
                ) from error
            return
        self.connected_at = time.monotonic()
        self._client.loop_start()
        with self._state:
            if not self._state.wait_for(lambda: self._answered or self.disconnected.is_set(),
                                        ACK_TIMEOUT):
                raise AssertionError(f"{client_id!r}: no CONNACK within {ACK_TIMEOUT}s")
        if not self._answered and self.connect_error is None:
            self.connect_error = (
                f"connection closed before any CONNACK (reason {self.disconnect_reason})")
        if expect_success and not self._connected:
            raise AssertionError(
                f"{client_id!r}: {transport} connection closed before a successful CONNACK "
                f"(CONNACK {self.connack_reason}, disconnect {self.disconnect_reason}, "
                f"error {self.connect_error})"
            )

    @property
    def refused(self) -> bool:
        """Whether the broker refused the connection (any way) instead of accepting it."""
        return not self._connected

    def tls_version(self) -> str | None:
        """The TLS version the connection negotiated (`TLSv1.2`, `TLSv1.3`), or None."""
        sock = self._client.socket()
        version = getattr(sock, "version", None)
        return version() if callable(version) else None

    def peer_certificate(self) -> dict | None:
        """The broker's certificate as `ssl.SSLSocket.getpeercert()` returns it, or None."""
        sock = self._client.socket()
        getter = getattr(sock, "getpeercert", None)
        return getter() if callable(getter) else None

    def _on_connect(self, _client, _userdata, flags, reason_code, props) -> None:
        with self._state:
            self.session_present = bool(flags.session_present)
            self.connack_failure = reason_code.is_failure
            self.connack_reason = reason_code
            self.connack_properties = property_dict(props)
            self._connected = not reason_code.is_failure
            self._answered = True
            self._state.notify_all()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, props) -> None:
        with self._state:
            self.disconnect_reason = reason_code
            self.disconnect_properties = property_dict(props)
            self.disconnected.set()
            self._state.notify_all()

    def _on_message(self, _client, _userdata, message) -> None:
        self.messages.put(Received(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            dup=bool(message.dup),
            properties=property_dict(getattr(message, "properties", None)),
        ))

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties) -> None:
        with self._state:
            self._publish_reasons[mid] = reason_code.value
            self.acknowledged.append(mid)
            self._state.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        with self._state:
            self._acks[mid] = [code.value for code in reason_codes]
            self._state.notify_all()

    def _on_unsubscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        with self._state:
            self._acks[mid] = [code.value for code in reason_codes]
            self._state.notify_all()

    def _wait_ack(self, what: str, mid: int) -> list[int]:
        with self._state:
            if not self._state.wait_for(lambda: mid in self._acks or self.disconnected.is_set(),
                                        ACK_TIMEOUT):
                raise AssertionError(f"{self.client_id!r}: no {what} within {ACK_TIMEOUT}s")
            if mid not in self._acks:
                raise AssertionError(
                    f"{self.client_id!r}: connection closed while waiting for {what} "
                    f"(reason {self.disconnect_reason})"
                )
            return self._acks.pop(mid)

    def subscribe(self, topic: str, qos: int = 0) -> int:
        """Subscribes to one filter; returns the QoS the broker granted (0x80 = failure)."""
        return self.subscribe_many([(topic, qos)])[0]

    def sync_cores(self) -> None:
        """Waits until every core of hydrant has handled what its cores sent each other before:
        a SUBACK comes only after a round trip with every other core (FIFO behind earlier
        messages), whereas a PUBACK only says a message was routed, not that it reached a
        session on another core. The filter is one nothing is published to."""
        assert self.subscribe("test/sync-cores", qos=0) == 0

    def subscribe_many(self, filters: list[tuple[str, int]]) -> list[int]:
        """Subscribes to several filters in one SUBSCRIBE; returns the SUBACK's codes."""
        result, mid = self._client.subscribe(filters)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"{self.client_id!r}: SUBSCRIBE not sent: {result}")
        return self._wait_ack("SUBACK", mid)

    def subscribe_v5(self, filters: list[tuple[str, SubscribeOptions]],
                     subscription_id: int | None = None) -> list[int]:
        """MQTT 5: subscribes with options (and a subscription identifier); returns the
        SUBACK's reason codes."""
        props = None
        if subscription_id is not None:
            props = properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=subscription_id)
        result, mid = self._client.subscribe(filters, properties=props)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"{self.client_id!r}: SUBSCRIBE not sent: {result}")
        return self._wait_ack("SUBACK", mid)

    def unsubscribe(self, topic: str | list[str]) -> list[int]:
        """Unsubscribes and waits for the UNSUBACK; returns its reason codes (MQTT 5)."""
        result, mid = self._client.unsubscribe(topic)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"{self.client_id!r}: UNSUBSCRIBE not sent: {result}")
        return self._wait_ack("UNSUBACK", mid)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0,
                retain: bool = False, props: Properties | None = None):
        """Publishes and waits until sent (QoS 0), PUBACK (QoS 1) or PUBCOMP (QoS 2).
        Returns the reason code of the PUBACK or PUBREC (MQTT 5; 0 otherwise)."""
        info = self._client.publish(topic, payload, qos, retain, properties=props)
        info.wait_for_publish(ACK_TIMEOUT)
        if not info.is_published():
            raise AssertionError(
                f"{self.client_id!r}: PUBLISH to {topic!r} at QoS {qos} not acknowledged "
                f"within {ACK_TIMEOUT}s"
            )
        with self._state:
            return self._publish_reasons.pop(info.mid, 0)

    def publish_many(self, topic: str, payloads: list[bytes], qos: int = 1) -> None:
        """Publishes a burst without waiting in between, then waits for every acknowledgement."""
        infos = [self._client.publish(topic, payload, qos) for payload in payloads]
        deadline = time.monotonic() + ACK_TIMEOUT
        for info in infos:
            info.wait_for_publish(max(deadline - time.monotonic(), 0.0))
        unacknowledged = sum(1 for info in infos if not info.is_published())
        if unacknowledged:
            raise AssertionError(
                f"{self.client_id!r}: {unacknowledged} of {len(infos)} PUBLISHes to {topic!r} "
                f"not acknowledged within {ACK_TIMEOUT}s"
            )

    def expect_message(self, timeout: float = MESSAGE_TIMEOUT) -> Received:
        """The next message received; fails if none arrives in time."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.client_id!r}: expected a message, none arrived within {timeout}s"
            ) from None

    def expect_messages(self, count: int, timeout: float = MESSAGE_TIMEOUT) -> list[Received]:
        """The next `count` messages; fails if they do not all arrive in time."""
        deadline = time.monotonic() + timeout
        received = []
        while len(received) < count:
            remaining = deadline - time.monotonic()
            try:
                received.append(self.messages.get(timeout=max(remaining, 0.0)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id!r}: expected {count} messages within {timeout}s, "
                    f"got {len(received)}: {received}"
                ) from None
        return received

    def expect_no_message(self, timeout: float = SILENCE) -> None:
        """Fails if any message arrives within `timeout`."""
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id!r}: expected no message, got {message}")

    def is_connected(self) -> bool:
        """Whether paho still holds an open, connected session."""
        return self._client.is_connected() and not self.disconnected.is_set()

    def disconnect(self, reason_code: int | None = None,
                   props: Properties | None = None) -> None:
        """Sends DISCONNECT (MQTT 5: with this reason code and properties), closes the socket,
        and stops the network thread."""
        if reason_code is None:
            self._client.disconnect(properties=props)
        else:
            reason = mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code)
            self._client.disconnect(reasoncode=reason, properties=props)
        self._client.loop_stop()

    def wait_disconnected(self, timeout: float = ACK_TIMEOUT) -> int | None:
        """Waits until the broker closes the connection; returns the reason code of its
        DISCONNECT (MQTT 5), or None."""
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id!r}: still connected after {timeout}s")
        reason = self.disconnect_reason
        return None if reason is None else reason.value

    def stall(self) -> None:
        """Stops the network thread but keeps the socket open: no more packets, no pings."""
        self._client.loop_stop()

    def drop(self) -> None:
        """Closes the TCP connection without a DISCONNECT, as a crashed client would."""
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Releases the client whatever its state (used at test teardown)."""
        try:
            if self.is_connected():
                self.disconnect()
            else:
                self.drop()
        except Exception:  # noqa: BLE001 - teardown must release every client
            self.drop()
