"""zonefan's sync sidecar: pushes the primary's zones to external providers.

Talks to the primary only through DNS and imports nothing from ``nameserver``.
"""
