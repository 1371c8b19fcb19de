"""QuantumQuill load test: what Locust loads (``locust -f locustfiles/locustfile.py``).

Usually started through ``python -m locustfiles.run`` (``make loadtest``),
which starts the platform when needed and passes the right options. Users:
``WebUser`` (pages), ``NewVisitor`` (sign-up), ``ApiUser`` (JSON API with a
token), ``GrpcUser`` (the generation service directly). Shapes: baseline,
stress, spike, soak (pick one in the web UI's shape drop-down, or ``--shape``).
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import gevent
from locust import events

from locustfiles.distributed import attach_drain
from locustfiles.grpc_user import GrpcUser
from locustfiles.journeys import ApiUser, NewVisitor, WebUser
from locustfiles.options import LoadOptions, add_arguments
from locustfiles.reporting import extend_web_ui, on_quitting
from locustfiles.requestlog import attach as attach_request_log
from locustfiles.shapes import SHAPE_CLASSES, BaselineShape, SoakShape, SpikeShape, StressShape
from locustfiles.thresholds import ThresholdsError, load_thresholds

__all__ = [
    "ApiUser",
    "BaselineShape",
    "GrpcUser",
    "NewVisitor",
    "SoakShape",
    "SpikeShape",
    "StressShape",
    "WebUser",
]

logger = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def _add_our_options(parser: Any, **_kwargs: Any) -> None:
    add_arguments(parser)


def _deliver_ctrl_c_to_the_main_greenlet() -> None:
    """Ctrl-C (or the launcher's SIGINT) ends the run through Locust's own path, never inside a user or shape.

    Python raises KeyboardInterrupt in whichever greenlet happens to be running,
    so a shape's tick could die with a traceback instead of Locust writing its
    reports. A gevent handler hands the interrupt to the main greenlet, where
    Locust catches it, saves the HTML report and shuts down.
    """
    hub = gevent.get_hub()

    def interrupt() -> None:
        hub.loop.run_callback(hub.parent.throw, KeyboardInterrupt)

    gevent.signal_handler(signal.SIGINT, interrupt)


@events.init.add_listener
def _on_init(environment: Any, runner: Any, web_ui: Any = None, **_kwargs: Any) -> None:
    _deliver_ctrl_c_to_the_main_greenlet()
    options = LoadOptions.from_parsed(environment.parsed_options)
    try:
        load_thresholds(options.thresholds)
    except ThresholdsError as exc:
        # SystemExit passes through Locust's event handling: a clear message and exit status 2, no traceback.
        raise SystemExit(f"locust: {exc}") from None
    if options.shape:
        shape = environment.available_shape_classes[SHAPE_CLASSES[options.shape].__name__]
        shape.runner = runner
        environment.shape_class = shape
    elif web_ui is not None:
        # In the web UI the shape comes from the drop-down; "Default" means users and spawn rate typed in.
        environment.shape_class = None
    if options.request_log:
        attach_request_log(environment, options.request_log)
    attach_drain(environment)
    extend_web_ui(environment)


events.quitting.add_listener(on_quitting)
