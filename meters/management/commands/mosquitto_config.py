"""``manage.py mosquitto_config --out DIR``: broker credentials from the meter registry.

Writes ``DIR/passwd`` (mode 0600: every active meter, username = public id,
plus the backend user), ``DIR/acl`` and a recommended ``DIR/mosquitto.conf``.
Reload a running Mosquitto afterwards with SIGHUP (docs/mqtt.md).

The backend password comes from ``MQTT_BACKEND_PASSWORD``. Without it the
backend line already in ``DIR/passwd`` is kept; if there is none, a password
is generated and printed once (put it in ``MQTT_URL``).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from meters.broker import broker_files_write, mosquitto_conf_text
from meters.credentials import mosquitto_hash


def _existing_hash(passwd: Path, username: str) -> str | None:
    try:
        lines = passwd.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        name, _, hashed = line.partition(":")
        if name == username and hashed:
            return hashed
    return None


class Command(BaseCommand):
    help = "Write the Mosquitto password file, ACL and a recommended mosquitto.conf from the meter registry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="directory to write passwd, acl, mosquitto.conf")
        parser.add_argument("--backend-username", default=settings.MQTT_BACKEND_USERNAME)
        parser.add_argument("--port", type=int, default=1883, help="listener port in mosquitto.conf")
        parser.add_argument("--bind", default="", help="listener address in mosquitto.conf (default: all)")
        parser.add_argument("--data-dir", type=Path, help="persistence directory (default: OUT/data)")
        parser.add_argument(
            "--owner", help="chown the files to USER[:GROUP], names or ids (as root; Mosquitto must read them)"
        )

    def handle(self, *args, **options) -> None:
        out: Path = options["out"].resolve()
        data_dir: Path = (options["data_dir"] or out / "data").resolve()
        username: str = options["backend_username"]
        owner = self._owner(options["owner"]) if options["owner"] else None
        try:
            out.mkdir(parents=True, exist_ok=True)
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create {exc.filename}: {exc.strerror}") from exc
        if not os.access(out, os.W_OK | os.X_OK):
            raise CommandError(f"{out} is not writable")
        backend_hash, generated = self._backend_hash(out / "passwd", username)
        try:
            conf = mosquitto_conf_text(
                password_file=str(out / "passwd"),
                acl_file=str(out / "acl"),
                persistence_location=str(data_dir),
                port=options["port"],
                bind_address=options["bind"],
            )
            files = broker_files_write(out, username, backend_hash)
            (out / "mosquitto.conf").write_text(conf, encoding="utf-8")
            if owner:
                for path in (files.password_file, files.acl_file, out / "mosquitto.conf", data_dir):
                    os.chown(path, *owner)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from exc
        self.stdout.write(f"wrote {files.password_file} ({files.meters} meters + {username}), {files.acl_file}, ")
        self.stdout.write(f"{out / 'mosquitto.conf'}; reload Mosquitto with SIGHUP to apply")
        if generated:
            self.stdout.write(
                f"generated backend password (shown once; set MQTT_BACKEND_PASSWORD and MQTT_URL=mqtt://"
                f"{username}:<password>@<host>:{options['port']}):\n{generated}"
            )

    def _backend_hash(self, passwd: Path, username: str) -> tuple[str, str]:
        """The backend's ``$7$`` hash, and the password if one was generated."""
        password = os.environ.get("MQTT_BACKEND_PASSWORD")
        if password is not None:
            if not password:
                raise CommandError("MQTT_BACKEND_PASSWORD is set but empty")
            return mosquitto_hash(password), ""
        kept = _existing_hash(passwd, username)
        if kept:
            return kept, ""
        password = secrets.token_urlsafe(24)
        return mosquitto_hash(password), password

    def _owner(self, owner: str) -> tuple[int, int]:
        """``USER[:GROUP]`` (names or numeric ids, e.g. ``1883:1883`` for the
        eclipse-mosquitto image) as uid and gid; the group defaults to the
        user's primary group."""
        user, _, group = owner.partition(":")
        try:
            if user.isdigit():
                uid, gid = int(user), int(user)
            else:
                entry = pwd.getpwnam(user)
                uid, gid = entry.pw_uid, entry.pw_gid
            if group:
                gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError as exc:
            raise CommandError(f"--owner {owner}: no such user or group") from exc
        return uid, gid
