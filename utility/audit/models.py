"""Every operator action, recorded: who, what, on what, when, and why."""

from __future__ import annotations

from django.db import models


class OperatorAction(models.Model):
    actor = models.CharField(max_length=150, help_text="operator username (or the OS user for CLI actions)")
    action = models.CharField(max_length=60, db_index=True)
    target = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"
