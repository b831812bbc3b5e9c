from django.apps import AppConfig


class ResidentsConfig(AppConfig):
    name = "utility.residents"
    label = "residents"
    default_auto_field = "django.db.models.BigAutoField"
