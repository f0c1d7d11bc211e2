"""zonefan's DNSSEC signer: keys, policy, signing and rollover timing (see issue 3).

Pure DNSSEC: imports neither ``nameserver`` nor ``sync``.
"""
