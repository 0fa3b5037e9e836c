"""The edges: everything that touches the world (DNS queries, TLS probes, files, processes,
the clock, the trust store), each behind a Protocol of :mod:`rollover.ports`."""
