"""SMTP TLS Reporting (RFC 8460): reports senders send about TLS sessions to a domain.

:mod:`.report` is the model and its validation (pure); :mod:`.sources` reads reports from
files, Maildirs and mboxes; :mod:`.imap` from an IMAP folder.
"""
