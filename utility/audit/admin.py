"""The audit log in the admin: every operator action, read-only."""

from __future__ import annotations

from django.contrib import admin

from utility.ledger.admin import ReadOnlyModelAdmin

from .models import OperatorAction


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyModelAdmin):
    list_display = ("at", "actor", "action", "target", "reason")
    list_filter = ("action", "actor")
    search_fields = ("actor", "action", "target", "reason")
    date_hierarchy = "at"
    show_full_result_count = False
