"""QuantumQuill's content-generation gRPC service and its client.

A separate deployable: nothing in this package imports Django. The server runs
with ``python -m contentgen_service serve``; Django code talks to it through
:mod:`contentgen_service.client`.
"""
