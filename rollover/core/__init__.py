"""The pure core: what a TLSA record is, what a sender concludes, what a rollover may do next.

No sockets, files, processes or clock reads in here (import-linter checks it): certificates,
keys, observations and the time come in as arguments, so every rule is tested table-driven.
"""
