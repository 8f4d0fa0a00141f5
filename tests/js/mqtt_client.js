// An MQTT.js client (the library browsers use) driven by a test over stdin and stdout.
//
// Usage: node mqtt_client.js '{"url": "ws://127.0.0.1:PORT/mqtt", ...}'
// Options (JSON, first argument): url (ws:// or wss://), ca (path of a PEM CA file for wss),
// clientId, username, password, protocolVersion (3, 4 or 5; 3 sends "MQIsdp" and the
// "mqttv3.1" WebSocket subprotocol), clean (default true), keepalive (seconds, default 60),
// connectTimeoutMs (default 5000), lifetimeMs (the process exits by itself after this long,
// default 60000, so a forgotten client never outlives its test).
//
// Commands, one JSON object per line on stdin:
//   {"op": "subscribe", "filter": "a/#", "qos": 1}
//   {"op": "publish", "topic": "a/b", "payload": "text", "qos": 1, "retain": false}
//   {"op": "end"}
// Events, one JSON object per line on stdout:
//   {"event": "connect", "sessionPresent": false}
//   {"event": "suback", "filter": "a/#", "granted": [1]}
//   {"event": "published", "topic": "a/b", "reasonCode": 0}
//   {"event": "message", "topic": "a/b", "payload": "text", "qos": 1, "retain": false}
//   {"event": "error", "message": "...", "code": 5}
//   {"event": "close"}
//   {"event": "ended"}   (after "end"; the process then exits 0)
"use strict";

const fs = require("fs");
const readline = require("readline");
const mqtt = require("mqtt");

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

const options = JSON.parse(process.argv[2] || "{}");
const lifetime = setTimeout(() => {
  emit({ event: "error", message: `lifetime of ${options.lifetimeMs || 60000} ms ran out` });
  process.exit(3);
}, options.lifetimeMs || 60000);
lifetime.unref();

const connectOptions = {
  clientId: options.clientId || "",
  protocolVersion: options.protocolVersion || 4,
  clean: options.clean !== false,
  keepalive: options.keepalive || 60,
  connectTimeout: options.connectTimeoutMs || 5000,
  reconnectPeriod: 0,
};
if (connectOptions.protocolVersion === 3) {
  connectOptions.protocolId = "MQIsdp";
}
if (options.username !== undefined) {
  connectOptions.username = options.username;
}
if (options.password !== undefined) {
  connectOptions.password = options.password;
}
if (options.ca) {
  connectOptions.ca = fs.readFileSync(options.ca);
  connectOptions.rejectUnauthorized = true;
}

const client = mqtt.connect(options.url, connectOptions);

client.on("connect", (connack) => {
  emit({ event: "connect", sessionPresent: Boolean(connack && connack.sessionPresent) });
});
client.on("message", (topic, payload, packet) => {
  emit({
    event: "message",
    topic,
    payload: payload.toString("utf8"),
    qos: packet.qos,
    retain: Boolean(packet.retain),
  });
});
client.on("error", (error) => {
  emit({ event: "error", message: String(error && error.message), code: error && error.code });
});
client.on("close", () => emit({ event: "close" }));

function run(command) {
  switch (command.op) {
    case "subscribe":
      client.subscribe(command.filter, { qos: command.qos || 0 }, (error, granted) => {
        if (error) {
          emit({ event: "error", message: String(error.message), op: "subscribe" });
          return;
        }
        emit({
          event: "suback",
          filter: command.filter,
          granted: (granted || []).map((grant) => grant.qos),
        });
      });
      break;
    case "publish":
      client.publish(
        command.topic,
        command.payload || "",
        { qos: command.qos || 0, retain: Boolean(command.retain) },
        (error, packet) => {
          if (error) {
            emit({ event: "error", message: String(error.message), op: "publish", code: error.code });
            return;
          }
          emit({
            event: "published",
            topic: command.topic,
            reasonCode: packet && packet.reasonCode !== undefined ? packet.reasonCode : 0,
          });
        },
      );
      break;
    case "end":
      client.end(false, {}, () => {
        emit({ event: "ended" });
        process.exit(0);
      });
      break;
    default:
      emit({ event: "error", message: `unknown op ${JSON.stringify(command.op)}` });
  }
}

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
  if (line.trim() === "") {
    return;
  }
  try {
    run(JSON.parse(line));
  } catch (error) {
    emit({ event: "error", message: `bad command ${line}: ${error.message}` });
  }
});
commands.on("close", () => {
  client.end(true, {}, () => process.exit(0));
});
