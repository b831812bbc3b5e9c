"""The demo grid, whole, in one process: ``manage.py demo --serve``.

On the embedded default (SQLite) it starts, beside the web server:
a Mosquitto broker of its own (with per-meter credentials generated from the
registry), the MQTT ingest, the simulated fleet (the real firmware, one
instance per meter), the embedded beat (settlement every minute of simulated
time, decisions, the chain mirror on the in-process EVM, payment
reconciliation) and the fake Stripe. Time is the demo clock: one interval
every 20 s, and the grid page's button moves it ahead.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from meters.broker_process import MosquittoProcess, mosquitto_binary
from meters.management.commands.ingest_mqtt import IngestOptions, IngestRunner
from meters.models import Grid
from meters.mqtt import mqtt_url_parse, publishers_close
from utility.celery import beat_embedded_start
from utility.lib.timeutil import interval_floor

from .clock import DemoClock, demo_clock_start, demo_clock_stop
from .fleet import grid_fleet
from .services import demo_seed

logger = logging.getLogger(__name__)


def _schedule_scaled(schedule: dict, speed: float, floor_s: float = 2.0) -> dict:
    """The beat's periods are simulated seconds in the demo: "settle every
    minute" becomes every 60/speed real seconds (at least ``floor_s``)."""
    return {
        name: {**entry, "schedule": max(floor_s, float(entry["schedule"]) / speed)} for name, entry in schedule.items()
    }


@dataclass
class DemoStack:
    """Everything the demo runs besides the web server; ``stop()`` ends it all."""

    var_dir: Path
    seconds_per_interval: float = 20.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    broker: MosquittoProcess | None = None
    ingest: IngestRunner | None = None
    clock: DemoClock | None = None
    grid: Grid | None = None

    def start(self) -> DemoStack:
        mosquitto_binary()  # a clear error now rather than a dead fleet later
        self.clock = self._clock_start()
        # The broker first: seeding funds meters, and funding sends decisions.
        self.broker = MosquittoProcess(self.var_dir / "mosquitto", port=settings.DEMO_MQTT_PORT).start()
        settings.MQTT_URL, settings.MQTT_PUBLISHER = self.broker.url, "paho"
        self.grid = demo_seed(self.clock.now())
        self._market_seed()
        self.broker.sync_credentials()
        self.ingest = IngestRunner(
            mqtt_url_parse(self.broker.url),
            IngestOptions(
                client_id="commonwatt-demo-ingest", batch_size=500, batch_ms=50, session_expiry_s=3600, log_every=5000
            ),
        )
        self._thread("ingest", self.ingest.run)
        settings.CELERY_BEAT_SCHEDULE = _schedule_scaled(settings.CELERY_BEAT_SCHEDULE, self.clock.speed)
        beat_embedded_start(self.stop_event)
        fleet = grid_fleet(self.grid, self.clock.sim, progress=lambda line: logger.info("fleet %s", line))
        self._thread("fleet", lambda: fleet.run(self.stop_event))
        return self

    def _clock_start(self) -> DemoClock:
        """The demo clock, kept in a file so a restarted demo carries on where
        it stopped (its meters' last readings are then in the past)."""
        state = self.var_dir / "demo-clock.json"
        start = interval_floor(timezone.now(), 3600) + timedelta(minutes=50)
        return demo_clock_start(
            start=start, speed=3600 / self.seconds_per_interval, interval_s=3600, state_path=str(state)
        )

    def _market_seed(self) -> None:
        from marketplace.demo import market_demo_seed

        try:
            market_demo_seed(self.grid, self.clock.now())
        except ValueError as exc:  # the grid lacks the meters the market demo needs
            logger.warning("market demo not seeded: %s", exc)

    def _thread(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=f"demo-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self, timeout_s: float = 15.0) -> None:
        self.stop_event.set()
        if self.ingest is not None:
            self.ingest.stop()
        for thread in self.threads:
            thread.join(timeout_s)
        publishers_close()
        if self.broker is not None:
            self.broker.stop()
        demo_clock_stop()
