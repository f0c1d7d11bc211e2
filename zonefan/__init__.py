"""The zonefan command line: the composition root that ties nameserver, signer and sync."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# dnspython's dns.dnssecalgs imports its DSA module whenever DNSSEC is loaded, and recent
# cryptography releases warn about DSA's deprecation at that import. zonefan never uses DSA
# (algorithms 3 and 6 are neither signed with nor offered); nothing a user did should print
# a library's warning. Here, not in cli.py, so `python -m zonefan.cli` is covered too.
warnings.filterwarnings(
    "ignore", message="DSA is deprecated", category=CryptographyDeprecationWarning
)
