from django.apps import AppConfig


class SettlementConfig(AppConfig):
    name = "settlement"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The chain mirror (a lower layer) reads settlement lines through this.
        from contracts.sources import register_line_source

        from .selectors import settlement_lines_for_chain

        register_line_source(settlement_lines_for_chain)
