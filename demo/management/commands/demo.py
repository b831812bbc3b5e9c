"""`manage.py demo [--serve]`: the demo grid on the embedded default."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from demo.services import DEMO_PASSWORD, SEED_PEOPLE

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Set up the demo grid (once) and, with --serve, run it: a Mosquitto of its own, the ingest, the "
        "simulated fleet, settlement and decisions every simulated interval, the chain mirror, and the web "
        "server. Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--serve", action="store_true", help="run the whole demo and the web server")
        parser.add_argument("--addr", default="127.0.0.1:8000", help="address:port to serve on")
        parser.add_argument(
            "--seconds-per-interval", type=float, default=20.0, help="real seconds per simulated hour (20)"
        )

    def handle(self, *args, serve: bool, addr: str, seconds_per_interval: float, **options):
        if seconds_per_interval <= 0:
            raise CommandError("--seconds-per-interval must be positive")
        call_command("migrate", interactive=False, verbosity=0)
        if not serve:
            from django.utils import timezone

            from demo.services import demo_seed

            grid = demo_seed(timezone.now())
            self.stdout.write(f"demo grid '{grid.slug}' ready with {grid.meters.count()} meters")
            return
        from demo.runner import DemoStack

        try:
            stack = DemoStack(settings.VAR_DIR, seconds_per_interval).start()
        except RuntimeError as exc:
            raise CommandError(f"the demo could not start: {exc}") from exc
        people = ", ".join(p[0] for p in SEED_PEOPLE)
        self.stdout.write(
            f"demo grid '{stack.grid.slug}': {stack.grid.meters.count()} meters, "
            f"one simulated hour every {seconds_per_interval:g} s\n"
            f"open http://{addr}/   logins (password {DEMO_PASSWORD!r}): operator (staff), {people}\n"
            "Ctrl-C stops the demo."
        )
        try:
            call_command("runserver", addr, use_reloader=False, use_threading=True)
        finally:
            stack.stop()
            self.stdout.write("demo stopped")
