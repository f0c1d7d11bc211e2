"""Zone transfers and what goes with them: AXFR/IXFR out, TSIG, the secondaries' ACL,
NOTIFY out and UPDATE as the server receives it."""
