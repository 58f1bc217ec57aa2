"""Records of the Jazari API.

Records the server sends whole (jobs, nodes, whoami, version) stay plain dicts, typed with
TypedDicts so that type checkers know their keys while fields added by newer servers pass
through. Small records the client builds itself are frozen dataclasses."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, TypedDict

JobState = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT"]
FINAL_STATES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT"})
DependencyType = Literal["after", "afterok", "afternotok", "afterany"]


class JobGpu(TypedDict, total=False):
    index: int
    pci_bus_id: str
    model: str
    node: str


class Progress(TypedDict, total=False):
    fraction: float
    message: str


class ArrayInfo(TypedDict, total=False):
    id: int
    index: int
    count: int
    throttle: int | None


class DependencyState(TypedDict, total=False):
    type: str
    job: int
    state: Literal["waiting", "satisfied", "never"]


class Job(TypedDict, total=False):
    """A job record (GET /v1/jobs/ID). Others' jobs listed with scope="all" carry only id, name,
    user, tenant, state, reason_code, resources, submit_time, start_time and array."""
    id: int
    name: str | None
    user: str | None
    tenant: str | None
    plugin: str
    plugin_version: str
    plugin_sha256: str
    params: dict[str, Any]
    resources: dict[str, Any]
    preemptible: bool
    requeue: bool
    submit_dir: str | None
    state: JobState
    reason: str | None
    reason_code: str | None
    submit_time: str
    submit_epoch: int
    start_time: str | None
    end_time: str | None
    exit_code: int | None
    signal: int | None
    node: str | None
    nodes: list[str]
    gpus: list[JobGpu]
    cpus: str | None
    numa_nodes: str | None
    backend: str | None
    placement: str | None
    progress: Progress | None
    metrics: dict[str, float]
    metrics_step: int | None
    artifacts: list[str]
    checkpoint_time: str | None
    cancelled_by: str | None
    estimated_start: str | None
    requeues: int
    priority: float | None
    attained_gpu_seconds: float
    preemptions: int
    resume_from: int | None
    # Issue 11 (arrays, dependencies, hold, nice, notify, accounting):
    array: ArrayInfo | None
    dependencies: list[DependencyState]
    held: bool
    held_by: str | None
    nice: int
    notify_url: str | None
    wait_s: int | None
    run_s: int | None
    gpu_hours: float


class NodeGpu(TypedDict, total=False):
    index: int
    pci_bus_id: str
    model: str
    memory_bytes: int
    numa: int
    os_names: str
    job: int | None


class Node(TypedDict, total=False):
    name: str
    site: str
    state: str
    labels: dict[str, str]
    source: str
    description: str
    address: str
    cpus: int
    cores: int
    cores_free: int
    gpus_total: int
    gpus_free: int
    gpu_model: str | None
    running_jobs: int
    last_heartbeat: str | None
    drain_reason: str | None
    gpus: list[NodeGpu]


class Whoami(TypedDict, total=False):
    name: str
    tenant: str
    role: Literal["user", "admin"]
    unix_user: str
    unix_user_from: Literal["user", "tenant"]


class Version(TypedDict, total=False):
    version: str
    commit: str
    plugin_abi: str
    kernels_api: int


@dataclass(frozen=True)
class Dependency:
    """Start only after another job: type "after" (it started), "afterok" (it SUCCEEDED),
    "afternotok" (it FAILED, TIMED OUT or was CANCELLED) or "afterany" (it ended). An array's id
    means every element of the array."""
    type: DependencyType
    job: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "job": int(self.job)}


@dataclass(frozen=True)
class Notify:
    """A webhook: when the job ends, jazarid POSTs its record to url, signed with secret
    (X-Jazari-Signature-256: sha256=HMAC-SHA256(secret, body)); secret is 16-256 bytes."""
    url: str
    secret: str

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "secret": self.secret}


@dataclass(frozen=True)
class JobPage:
    """One page of GET /v1/jobs: next_after continues it (None: the last page)."""
    jobs: list[Job]
    next_after: int | None
    truncated: bool


@dataclass(frozen=True)
class LogChunk:
    """A plain read of a job's log: text (decoded as UTF-8, bad bytes replaced), the raw
    bytes, and the offset to read on from."""
    data: bytes
    next_offset: int

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Artifact:
    """A file in a job's output folder."""
    name: str
    size: int


@dataclass(frozen=True)
class PendingReason:
    """Why a job waits (or what it is doing): from its record."""
    id: int
    state: str
    reason: str | None
    reason_code: str | None
    estimated_start: _dt.datetime | None
    priority: float | None
    attained_gpu_seconds: float | None = None
    preemptions: int | None = None

    def __str__(self) -> str:
        if self.state != "PENDING":
            return "job %d is %s%s" % (self.id, self.state,
                                       ": " + self.reason if self.reason else "")
        s = "job %d is waiting (%s): %s" % (self.id, self.reason_code or "queued",
                                             self.reason or "")
        if self.estimated_start:
            s += "; estimated start %s" % self.estimated_start.isoformat()
        return s


@dataclass(frozen=True)
class ArrayCancel:
    """The answer of cancel_array()."""
    array_id: int
    cancelled: list[int]
    already_ended: list[int]


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's own history (GET /v1/jobs/ID/events): a state change, or (type
    "metric") a value a plugin reported, whose name/value/step are parsed from detail."""
    time: str
    type: str
    detail: str | None

    @property
    def metric(self) -> tuple[str, float, int | None] | None:
        """(name, value, step) for a metric event, else None."""
        if self.type != "metric" or not self.detail:
            return None
        import json
        try:
            d = json.loads(self.detail)
            return str(d["name"]), float(d["value"]), (int(d["step"]) if d.get("step")
                                                         is not None else None)
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Event:
    """One server-sent event of GET /v1/events.

    type: "job" (a job changed state: data holds id, time, job, state, previous, user, tenant,
    name, reason, reason_code, exit_code, array) or "reset" (the server no longer has the events
    after the Last-Event-ID asked for: re-list the jobs; data holds reason).
    id: the event id (increasing, resumable), None when the server sent none."""
    type: str
    id: int | None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def job(self) -> int | None:
        v = self.data.get("job")
        return v if isinstance(v, int) else None

    @property
    def state(self) -> str | None:
        v = self.data.get("state")
        return v if isinstance(v, str) else None

    @property
    def final(self) -> bool:
        """True when this event says a job ended."""
        return self.state in FINAL_STATES
