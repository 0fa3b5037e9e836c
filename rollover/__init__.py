"""rollover: derive DANE TLSA records and rotate them without breaking mail delivery."""

__version__ = "0.1.0"
