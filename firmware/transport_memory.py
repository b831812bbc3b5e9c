"""An in-process MQTT broker and transport: tests and simulators without a
broker. Retained messages, ``+``/``#`` filters, wills on an unclean drop, and
an outage switch; delivery happens in ``poll()``, in publish order."""


def topic_matches(pattern, topic):
    """MQTT filter matching (``+`` one level, ``#`` the rest)."""
    wanted = pattern.split("/")
    given = topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(given) or (level != "+" and level != given[index]):
            return False
    return len(wanted) == len(given)


class MemoryBroker:
    """``published`` lists every ``(topic, payload, retain)``; ``stop()`` drops
    every client and refuses connections until ``start()``."""

    def __init__(self):
        self.retained = {}
        self.clients = {}
        self.published = []
        self.up = True

    def publish(self, topic, payload, retain=False):
        payload = bytes(payload)
        self.published.append((topic, payload, retain))
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        for client in list(self.clients.values()):
            client._offer(topic, payload)

    def stop(self):
        self.up = False
        for client in list(self.clients.values()):
            client._dropped()

    def start(self):
        self.up = True


class MemoryTransport:
    """One client of a ``MemoryBroker`` with the firmware's transport interface."""

    def __init__(self, broker):
        self.broker = broker
        self.client_id = None
        self._callback = None
        self._connected = False
        self._filters = []
        self._inbox = []
        self._will = None

    def set_callback(self, callback):
        self._callback = callback

    def connect(self, client_id, will_topic=None, will_payload=None):
        if not self.broker.up:
            raise OSError("broker unreachable")
        previous = self.broker.clients.get(client_id)
        if previous is not None and previous is not self:
            previous._dropped()
        self.client_id = client_id
        self._connected = True
        self._filters = []
        self._inbox = []
        self._will = (will_topic, will_payload) if will_topic else None
        self.broker.clients[client_id] = self

    def is_connected(self):
        return self._connected

    def subscribe(self, pattern, qos=1):
        self._need()
        self._filters.append(pattern)
        for topic in sorted(self.broker.retained):
            if topic_matches(pattern, topic):
                self._inbox.append((topic, self.broker.retained[topic]))

    def publish(self, topic, payload, retain=False, qos=1):
        self._need()
        self.broker.publish(topic, payload, retain)

    def poll(self):
        self._need()
        while self._inbox and self._connected:
            topic, payload = self._inbox.pop(0)
            if self._callback is not None:
                self._callback(topic, payload)

    def close(self):
        """A clean disconnect: no will."""
        self._leave()

    def crash(self):
        """An unclean drop (power cut, network gone): the broker sends the will."""
        will = self._will
        self._leave()
        if will is not None and self.broker.up:
            self.broker.publish(will[0], will[1], True)

    def _need(self):
        if not self._connected:
            raise OSError("not connected")

    def _offer(self, topic, payload):
        for pattern in self._filters:
            if topic_matches(pattern, topic):
                self._inbox.append((topic, payload))
                return

    def _dropped(self):
        self.crash()

    def _leave(self):
        self._connected = False
        self._inbox = []
        if self.broker.clients.get(self.client_id) is self:
            del self.broker.clients[self.client_id]
