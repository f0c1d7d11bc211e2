"""zonefan's DNSSEC signer: keys, policy, signing and rollover timing.

Pure DNSSEC: imports neither ``nameserver`` nor ``sync``.
"""
