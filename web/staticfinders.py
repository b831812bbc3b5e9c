"""Serve the two front-end libraries from ``web/node_modules`` (npm, pinned by
``web/package-lock.json``) as ``web/vendor/*``: nothing third-party is
committed, nothing is fetched from a CDN, and ``collectstatic`` copies them."""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
PREFIX = "web/vendor/"
# Served name -> the file in node_modules.
VENDOR_FILES = {
    "htmx.min.js": NODE_MODULES / "htmx.org" / "dist" / "htmx.min.js",
    "chart.umd.min.js": NODE_MODULES / "chart.js" / "dist" / "chart.umd.min.js",
}


def vendor_missing() -> list[str]:
    """The vendor files npm has not installed (empty when all are there)."""
    return [str(path) for path in VENDOR_FILES.values() if not path.is_file()]


class VendorFinder(BaseFinder):
    def check(self, **kwargs):
        return []

    def find(self, path: str, find_all: bool = False, **kwargs):
        name = path.removeprefix(PREFIX) if path.startswith(PREFIX) else None
        source = VENDOR_FILES.get(name) if name else None
        if source is None or not source.is_file():
            return [] if find_all else None
        return [str(source)] if find_all else str(source)

    def list(self, ignore_patterns):
        for source in VENDOR_FILES.values():
            if source.is_file():
                storage = FileSystemStorage(location=str(source.parent))
                storage.prefix = PREFIX.rstrip("/")
                yield source.name, storage
