from django.apps import AppConfig


class MetersConfig(AppConfig):
    name = "meters"
    default_auto_field = "django.db.models.BigAutoField"
