"""Reading TLSA records the way a DANE sender must: one malformed record is unusable, not a
reason to discard the reply (RFC 7671 section 5, RFC 6698 section 2.1).

dnspython 2.9 refuses a TLSA rdata whose data length does not fit its matching type (a 31-byte
``3 1 1``) while it parses the message, so a whole answer, a zone file or an IXFR carrying one
such record became unreadable, even with a good record beside it. Such records are read here as
they are; :meth:`rollover.core.association.Association.is_well_formed` and
:func:`rollover.core.matching.usable_records` list them as unusable, and the rest count. Older
dnspython releases (2.6 to 2.8) never checked, and need nothing.
"""

from __future__ import annotations


def tolerate_malformed_tlsa() -> None:
    """Idempotent; called by every module that parses DNS messages or zone text."""
    import dns.rdtypes.ANY.TLSA

    tlsa = dns.rdtypes.ANY.TLSA.TLSA
    if getattr(tlsa, "_cert_length_by_mtype", None):
        # The length check is the class's own table (dnspython 2.9): empty, nothing is refused.
        tlsa._cert_length_by_mtype = {}
