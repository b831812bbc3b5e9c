"""Residents are Django users; their coin wallet lives in the ledger."""
