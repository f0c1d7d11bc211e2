"""Answering queries: parsing, answers and denial from zone snapshots, rendering, the
responder with its cache and prepared answers, response rate limiting and rate-limited logging."""
