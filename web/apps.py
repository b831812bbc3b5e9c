from django.apps import AppConfig


class WebConfig(AppConfig):
    """The top layer: resident and operator pages, the REST API (issue 7)."""

    name = "web"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib import admin

        from . import checks, ratelimit  # noqa: F401 - registers the checks and login signal receivers
        from .forms import AdminLoginForm

        # The admin's login counts failures like every other login (web/ratelimit.py).
        admin.site.login_form = AdminLoginForm
        admin.site.site_header = "Commonwatt operations"
        admin.site.site_title = "Commonwatt admin"
        admin.site.index_title = "Grids, meters, residents and the books"
