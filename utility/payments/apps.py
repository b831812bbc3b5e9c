from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "utility.payments"
    label = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the configuration checks)
