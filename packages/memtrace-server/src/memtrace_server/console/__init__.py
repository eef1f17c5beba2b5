"""The web console under ``/ui/``: server-rendered pages over the same services as the API.

It holds no SQL and no business rule: every read and change goes through ``service``.
"""
