"""Load tests for QuantumQuill: Locust scenarios, load shapes, thresholds and the launcher.

``locustfile.py`` is what Locust loads; ``run.py`` (``python -m locustfiles.run``)
starts the platform when needed and wraps Locust for QA and CI. Importing this
package imports nothing else: the launcher must not pull in Locust, whose
import patches the standard library for gevent.
"""
