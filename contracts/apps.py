from django.apps import AppConfig


class ContractsConfig(AppConfig):
    """The chain mirror: CommunityLedger.sol and the code that feeds it."""

    name = "contracts"
    default_auto_field = "django.db.models.BigAutoField"
