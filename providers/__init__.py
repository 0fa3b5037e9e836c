"""DNS provider adapters (RFC 2136, zone file, Route 53) behind one Protocol."""
