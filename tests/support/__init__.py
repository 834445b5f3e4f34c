"""Shared helpers for the test suite: external tools and a real Prometheus/Alertmanager stack."""
