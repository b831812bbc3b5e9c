"""`manage.py demo [--serve]`: set up the demo grid and (optionally) serve it."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from demo.services import DEMO_PASSWORD, SEED_PEOPLE, demo_seed, demo_tick


class Command(BaseCommand):
    help = "Create (once) and bring up to date the demo grid; with --serve, run the web server."

    def add_arguments(self, parser):
        parser.add_argument("--serve", action="store_true", help="start the web server afterwards")
        parser.add_argument("--addr", default="127.0.0.1:8000", help="address:port to serve on")

    def handle(self, *args, serve: bool, addr: str, **options):
        call_command("migrate", interactive=False, verbosity=0)
        now = timezone.now()
        grid = demo_seed(now)
        recorded, settled = demo_tick(grid, now)
        self.stdout.write(f"demo grid '{grid.slug}': {recorded} readings recorded, {settled} intervals settled")
        people = ", ".join(p[0] for p in SEED_PEOPLE)
        self.stdout.write(f"logins (password {DEMO_PASSWORD!r}): operator (staff), {people}")
        if serve:
            self.stdout.write(f"open http://{addr}/  (Ctrl-C stops)")
            call_command("runserver", addr, use_reloader=False)
