"""jazari: a Python client for the Jazari GPU job service's REST API (standard library only).

    import jazari
    c = jazari.Client()                      # JAZARI_URL / JAZARI_TOKEN, as the CLI
    job = c.submit(command=["python3", "train.py"], gpus=1, time_limit="1h")
    for line in c.logs(job["id"], follow=True):
        print(line)
    print(c.wait(job["id"])["state"])

See docs/python-client.md."""

__version__ = "0.3.0"

from .client import DEFAULT_URL, Client, parse_time, resolve_config  # noqa: E402
from .errors import (ConnectionFailed, Conflict, Forbidden, InsufficientStorage,  # noqa: E402
                     InvalidRequest, JazariError, MethodNotAllowed, NotFound, PayloadTooLarge,
                     ServerError, ServiceUnavailable, TooManyRequests, Unauthorized, WaitTimeout)
from .records import (FINAL_STATES, ArrayCancel, ArrayInfo, Artifact, Dependency,  # noqa: E402
                      DependencyState, Event, Job, JobEvent, JobPage, JobState, LogChunk, Node,
                      Notify, PendingReason, Version, Whoami)

__all__ = [
    "Client", "DEFAULT_URL", "parse_time", "resolve_config",
    "JazariError", "InvalidRequest", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed",
    "Conflict", "PayloadTooLarge", "TooManyRequests", "ServerError", "ServiceUnavailable",
    "InsufficientStorage", "ConnectionFailed", "WaitTimeout",
    "FINAL_STATES", "ArrayCancel", "ArrayInfo", "Artifact", "Dependency", "DependencyState",
    "Event", "Job", "JobEvent", "JobPage", "JobState", "LogChunk", "Node", "Notify",
    "PendingReason", "Version", "Whoami",
]
