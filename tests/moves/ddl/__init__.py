"""A test-only sharded app (``ddlnotes``) whose migrations change during a live move.

``settings`` installs it on top of the project's settings; ``QQ_DDL_MIGRATIONS``
picks the code version a process runs (``v1``, ``additive``,
``additive2`` or ``destructive``): the models and the migration package that go with it, as a
deploy would bring them.
"""
