"""System checks of the web app: the front-end libraries are installed."""

from __future__ import annotations

from django.core import checks

from .staticfinders import vendor_missing


@checks.register(checks.Tags.staticfiles)
def vendor_assets_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    missing = vendor_missing()
    if not missing:
        return []
    return [
        checks.Warning(
            f"front-end libraries missing: {', '.join(missing)}",
            hint="run `npm ci --prefix web` (make run and CI do)",
            id="web.W001",
        )
    ]
