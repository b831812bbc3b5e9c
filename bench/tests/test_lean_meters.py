"""The ingest benchmark's simulated meters (``bench.lean_meters``): each logs
in as itself, the broker's ACL still applies to it, a refusal is counted, and
every ack it is sent arrives and is PUBACKed."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from bench.lean_meters import MeterLink, MeterLinkError, links_run
from meters.tests.factories import grid_make, meter_issue
from meters.tests.mosquitto import MqttProbe


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_lean_meters_log_in_as_themselves_and_the_acl_still_holds(mosquitto):
    grid = grid_make(f"lean-{uuid.uuid4().hex[:6]}")
    a, b = (meter_issue(grid, f"{name}-{uuid.uuid4().hex[:4]}") for name in "AB")
    mosquitto.sync_credentials()
    topic = f"grid/{grid.slug}/meters/{{}}/readings"
    ack_topic = f"grid/{grid.slug}/meters/{a.meter.public_id}/ack"
    with MqttProbe(mosquitto, mosquitto.backend_username, mosquitto.backend_password) as backend:
        assert backend.connect() == 0
        assert backend.subscribe(f"grid/{grid.slug}/meters/+/readings") == [1]
        messages = [(topic.format(a.meter.public_id), b"one"), (topic.format(b.meter.public_id), b"spoof")]
        messages.append((topic.format(a.meter.public_id), b"two"))
        link = MeterLink.connect(mosquitto.host, mosquitto.port, a.meter.public_id, a.secret, ack_topic, messages)

        def ack_later():
            time.sleep(0.3)
            for seq, status in ((1, "accepted"), (2, "duplicate")):
                backend.publish(ack_topic, {"seq": seq, "status": status, "reason": None})

        acker = threading.Thread(target=ack_later)
        acker.start()
        assert links_run([link], acks_expected=2, publish_timeout_s=10, acks_timeout_s=10) > 0
        acker.join()
        # Three PUBACKs, one of them the ACL's refusal of B's topic.
        assert (link.confirmed, link.refused, link.inflight) == (3, 1, 0)
        assert (link.acks, link.accepted) == (2, 1)
        received = [backend.next_message(5) for _ in range(2)]
        assert [m.payload for m in received if m is not None] == [b"one", b"two"]
        assert backend.next_message(0.3) is None  # the spoofed reading never got through
        link.close()

    with pytest.raises(MeterLinkError, match="CONNACK refused"):
        MeterLink.connect(mosquitto.host, mosquitto.port, a.meter.public_id, "wrong secret", None, [])
