"""Extraction on a Ray cluster: the runner behind `--executor ray` (docs/SCALE_OUT.md).

The cluster computes and this process writes: results come back here, and the feature store commits them
exactly as it commits a local run's, so its single-writer protocol, its resume after `kill -9` and its
reading rules are unchanged (docs/FEATURE_STORE.md). `RayRunner` has `ExtractionRunner`'s interface:

* CPU work is Ray **tasks**: a chunk of samples per task, chunked as the local pool chunks them. A task
  whose worker process or node dies is run again by Ray (`max_retries`), and tasks go wherever the
  cluster has room, so nodes may join or leave under a running job. Ray reuses worker processes, and
  each builds an extractor the first time a task of its feature set reaches it, then keeps it.
* Batched encoders (`batch_size > 1`) get the batches the local runner forms (the extractor's
  `batch_order`, `batch_size` samples at a time), one batch per call, so a batch holds the same samples
  wherever it runs. With `gpus > 0` they run in **actors** that each hold a GPU share for their life
  (Ray restarts an actor that dies and retries its calls): a model loads once per GPU and stays there,
  where a GPU task would get a fresh process, and a fresh model, each time.
* A chunk whose worker still dies after Ray's retries (a sample that crashes a native library, or one
  that runs the node out of memory) is split into single samples; a sample that still kills its worker
  alone is recorded as its `WorkerCrashed` failure, as the local runner does.
* Extractors that cannot be rebuilt elsewhere (`Extractor.portable` False: a dataset's precomputed
  features, held in this process's memory) run here.
* `prepare` (the whole-table hook) has run before: workers receive prepared records.

Every node must hold emocli and the extractors' libraries in the same versions as this process, and see
the media at the same paths (a shared file system). A worker whose extractor would make another feature
set (another library version changes the set's fingerprint) stops the run with an error naming the node
and the versions, rather than mix features of two versions under one name.

Ray is an optional dependency (`pip install 'emocli[ray]'`), imported when the runner starts.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from emocli.core.errors import ConfigError, EmoError, ExtractionError
from emocli.features.runner import (
    CHUNKS_PER_WORKER,
    MAX_CHUNK,
    ExtractionRunner,
    ExtractorRecipe,
    JobResult,
    SampleFailure,
    extract_batch,
    extract_one,
    media_path,
)

if TYPE_CHECKING:
    from emocli.core.types import Features
    from emocli.features.base import Extractor

INSTALL_HINT = "pip install 'emocli[ray]'"
GIB = 1024**3
CAPACITY_REFRESH_S = 10.0  # how often the cluster's size is read again (nodes join and leave)
CONNECT_TIMEOUT_S = 10.0
CALLS_PER_ACTOR = 2  # batches queued per GPU actor: the next one is there when the current one ends


class RayExecutor(BaseModel):
    """Where and with what resources extraction runs on a Ray cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(
        None,
        description="the cluster: host:port of a running cluster's head, ray://host:10001 (Ray Client), 'auto' "
        "(a running cluster, else an error) or 'local' (a new cluster on this machine). None: $RAY_ADDRESS, else "
        "the cluster last started on this machine, else a new local one (ray.init's rule)",
    )
    cpus: float = Field(1.0, gt=0, description="CPUs per task (a worker's torch and BLAS threads)")
    gpus: float = Field(0.0, ge=0, description="GPUs per worker of a batched encoder (batch_size > 1); 0: CPU")
    memory_gib: float | None = Field(None, gt=0, description="memory per task, GiB (Ray schedules by it)")
    max_retries: int = Field(3, ge=0, description="times Ray runs a task again when its worker or node dies")

    def runner(self, announce: Callable[[str], None] | None = None) -> RayRunner:
        """The runner of one extraction; `announce` takes its one-line notes (the cluster it runs on)."""
        return RayRunner(self, announce)


def executor_of(executor: str | RayExecutor | None) -> RayExecutor | None:
    """`executor` as the API takes it ("local", "ray" or a RayExecutor) as the store takes it (None: local);
    checks that Ray is installed before any slow work."""
    if executor is None or executor == "local":
        return None
    if executor == "ray":
        executor = RayExecutor()
    if not isinstance(executor, RayExecutor):
        raise ConfigError(f"executor {executor!r}: choose 'local' or 'ray' (or a RayExecutor)")
    if find_spec("ray") is None:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}")
    return executor


def require_ray():  # -> the ray module
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str | None) -> None:
    """A host:port (or ray://host:port) that does not answer is one line at once: ray.init would retry
    for minutes."""
    if address is None or ":" not in address:
        return  # "auto", "local", or ray.init's own search
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConfigError(f"Ray cluster {address}: cannot connect ({error.strerror or error}); is `ray start --head` "
                          "running there, and is the port open?") from None


# --- worker side -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteJob:
    """What a worker needs to rebuild one feature set's extractor, and to check it builds the same one."""

    recipe: ExtractorRecipe
    versions: dict[str, str]  # the libraries' versions here, where the feature set's name was made
    threads: int  # torch and BLAS threads: the task's CPUs


_built: dict[str, Extractor] = {}  # this worker process's extractors, by feature set name


def _extractor(job: RemoteJob) -> Extractor:
    extractor = _built.get(job.recipe.key)
    if extractor is None:
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(variable, str(job.threads))  # read when numpy or torch loads
        # Ray forwards each worker's stderr to the driver line by line: weight-loading bars would bury the
        # driver's own progress display.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        extractor = job.recipe.build()
        if extractor.feature_set_name != job.recipe.key:
            theirs = extractor.versions()
            differ = ", ".join(f"{name} {theirs.get(name, 'absent')} (driver: {version})"
                               for name, version in job.versions.items() if theirs.get(name) != version)
            raise ConfigError(
                f"node {socket.gethostname()} would make feature set {extractor.feature_set_name}, not "
                f"{job.recipe.key}: {differ or 'its extractor differs'}; install the same versions on every node"
            )
        _built[job.recipe.key] = extractor
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)  # Ray may hand this process tasks of other sizes
    return extractor


def extract_remote(job: RemoteJob, samples: list[dict[str, Any]], batched: bool) -> list[Features | SampleFailure]:
    """One chunk, or one batch of a batched encoder, in a worker: what a Ray task or actor call runs."""
    extractor = _extractor(job)
    if batched and len(samples) > 1:
        return extract_batch(extractor, samples)
    return [extract_one(extractor, sample) for sample in samples]


class ExtractionActor:
    """A GPU worker (made a Ray actor by the runner): holds its GPU share and its extractors for its life."""

    def run(self, job: RemoteJob, samples: list[dict[str, Any]], batched: bool) -> list[Features | SampleFailure]:
        return extract_remote(job, samples, batched)


# --- driver side -------------------------------------------------------------------------------------

@dataclass
class _Unit:
    """Samples sent together: a chunk, or one batch of a batched encoder."""

    job: int
    indices: list[int]
    gpu: bool  # runs in a GPU actor
    batched: bool


class RayRunner:
    """`ExtractionRunner`'s interface on a Ray cluster. Use as a context manager; it connects to the cluster
    (or starts a local one) when remote work first comes, and disconnects on exit if it connected."""

    def __init__(self, executor: RayExecutor, announce: Callable[[str], None] | None = None):
        self.executor = executor
        self.announce = announce
        self._ray: Any = None
        self._connected_here = False
        self._in_flight: dict[Any, tuple[_Unit, Any]] = {}  # ObjectRef -> (unit, actor or None)
        self._actors: list[Any] = []
        self._capacity, self._capacity_read = 1, -math.inf

    def __enter__(self) -> RayRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._ray is None:
            return
        for ref in self._in_flight:  # an interrupted run leaves the cluster free
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - an actor call cannot be forced; its actor goes below
                pass
        self._in_flight.clear()
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors.clear()
        if self._connected_here:
            self._ray.shutdown()

    # -- cluster ----------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        ray = require_ray()
        if not ray.is_initialized():
            _check_reachable(self.executor.address)
            try:
                ray.init(address=self.executor.address, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as error:
                where = self.executor.address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
                hint = ""
                if "Failed to connect" in str(error) and os.environ.get("RAY_AUTH_MODE") is None:
                    hint = ("; a cluster with token authentication (what `ray start` sets up) needs RAY_AUTH_MODE=token "
                            "here, and its token in ~/.ray/auth_token or $RAY_AUTH_TOKEN")
                raise ConfigError(f"Ray cluster {where}: {str(error).splitlines()[0]}{hint}") from None
            self._connected_here = True
        self._ray = ray
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        if self.announce is not None:
            address = ray.get_runtime_context().gcs_address
            self.announce(f"ray: cluster at {address}: {nodes} node(s), {cpus:g} CPUs, {gpus:g} GPUs")
        self._lacking("CPU", cpus, self.executor.cpus)
        options: dict[str, Any] = {"num_cpus": self.executor.cpus}
        if self.executor.memory_gib is not None:
            options["memory"] = int(self.executor.memory_gib * GIB)
        self._task = ray.remote(extract_remote).options(**options, max_retries=self.executor.max_retries)
        self._actor_class = ray.remote(ExtractionActor).options(
            **options, num_gpus=self.executor.gpus, max_restarts=-1, max_task_retries=self.executor.max_retries
        )
        return ray

    def _tasks_at_once(self) -> int:
        """Tasks kept in flight: CHUNKS_PER_WORKER per task the cluster can run at once (read again every
        CAPACITY_REFRESH_S, so that nodes joining an autoscaling cluster get work)."""
        now = time.monotonic()
        if now - self._capacity_read > CAPACITY_REFRESH_S:
            cpus = self._ray.cluster_resources().get("CPU", 0.0)
            self._capacity, self._capacity_read = max(1, int(cpus // self.executor.cpus)), now
        return self._capacity * CHUNKS_PER_WORKER

    def _lacking(self, name: str, have: float, need: float) -> None:
        if have < need and self.announce is not None:
            self.announce(f"ray: each worker asks for {need:g} {name}s and the cluster has {have:g} now; "
                          "its work waits until a node with them joins")

    def _gpu_actors(self) -> list[Any]:
        if not self._actors:
            gpus = self._ray.cluster_resources().get("GPU", 0.0)
            self._lacking("GPU", gpus, self.executor.gpus)
            count = max(1, int(gpus // self.executor.gpus))
            self._actors = [self._actor_class.remote() for _ in range(count)]
        return self._actors

    # -- jobs -------------------------------------------------------------------------------------

    def run_jobs(self, jobs: Sequence[tuple[Extractor, Sequence[dict[str, Any]]]]) -> Iterator[JobResult]:
        """Every job's samples: the portable extractors' on the cluster, then the others in this process.
        Yields (job, index, result) in completion order, one result per sample."""
        remote = [job for job, (extractor, samples) in enumerate(jobs) if samples and extractor.portable]
        if remote:
            yield from self._run_remote(jobs, remote)
        here = [(extractor, [] if extractor.portable else samples) for extractor, samples in jobs]
        with ExtractionRunner([], workers=0) as local:
            yield from local.run_jobs(here)

    def _units(self, jobs: Sequence[tuple[Extractor, Sequence[dict[str, Any]]]], remote: list[int]) -> deque[_Unit]:
        total = sum(len(jobs[job][1]) for job in remote if jobs[job][0].batch_size == 1)
        chunk = max(1, min(MAX_CHUNK, math.ceil(total / self._tasks_at_once())))
        units: deque[_Unit] = deque()
        for job in remote:
            extractor, samples = jobs[job]
            if extractor.batch_size > 1:  # the local runner's batches, so each holds the same samples
                order = extractor.batch_order(samples) or range(len(samples))
                step, gpu = extractor.batch_size, self.executor.gpus > 0
                units.extend(_Unit(job, list(order[s : s + step]), gpu, True) for s in range(0, len(order), step))
            else:
                units.extend(_Unit(job, list(range(s, min(s + chunk, len(samples)))), False, False)
                             for s in range(0, len(samples), chunk))
        return units

    def _run_remote(self, jobs: Sequence[tuple[Extractor, Sequence[dict[str, Any]]]],
                    remote: list[int]) -> Iterator[JobResult]:
        ray = self._connect()
        from ray import exceptions

        threads = max(1, int(self.executor.cpus))
        descriptions = {job: ray.put(RemoteJob(ExtractorRecipe.of(jobs[job][0]), jobs[job][0].versions(), threads))
                        for job in remote}
        queues: dict[bool, deque[_Unit]] = {False: deque(), True: deque()}  # tasks, GPU actors' calls
        for unit in self._units(jobs, remote):
            queues[unit.gpu].append(unit)
        calls: list[int] = []  # per GPU actor: calls in flight

        def send(unit: _Unit, actor: int | None) -> None:
            description, samples = descriptions[unit.job], [jobs[unit.job][1][i] for i in unit.indices]
            if actor is None:
                ref = self._task.remote(description, samples, unit.batched)
            else:
                calls[actor] += 1
                ref = self._actors[actor].run.remote(description, samples, unit.batched)
            self._in_flight[ref] = (unit, actor)

        tasks = 0
        while queues[False] or queues[True] or self._in_flight:
            limit = self._tasks_at_once()
            while queues[False] and tasks < limit:
                send(queues[False].popleft(), None)
                tasks += 1
            if queues[True] and not calls:
                calls = [0] * len(self._gpu_actors())
            while queues[True] and min(calls) < CALLS_PER_ACTOR:
                send(queues[True].popleft(), calls.index(min(calls)))
            refs = list(self._in_flight)
            done, rest = ray.wait(refs, num_returns=1)
            if rest:  # everything else that has finished too: one pass over the refs per round, not per task
                done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in done:
                unit, actor = self._in_flight.pop(ref)
                if actor is None:
                    tasks -= 1
                else:
                    calls[actor] -= 1
                try:
                    results = ray.get(ref)
                except exceptions.RayTaskError as error:  # our code raised: the extractor cannot run there
                    cause = error.cause
                    if isinstance(cause, EmoError):
                        raise cause from None
                    raise ExtractionError(f"{jobs[unit.job][0].name} cannot run on the Ray cluster: "
                                          f"{type(cause).__name__}: {cause}") from None
                except (exceptions.WorkerCrashedError, exceptions.OutOfMemoryError, exceptions.NodeDiedError,
                        exceptions.RayActorError, exceptions.ObjectLostError) as error:
                    if len(unit.indices) > 1:  # still dying after Ray's retries: find the sample that kills it
                        queues[unit.gpu].extendleft(_Unit(unit.job, [i], unit.gpu, unit.batched) for i in unit.indices)
                    else:
                        yield unit.job, unit.indices[0], self._crash_failure(jobs[unit.job], unit.indices[0], error)
                    continue
                for index, result in zip(unit.indices, results, strict=True):
                    yield unit.job, index, result

    def _crash_failure(self, job: tuple[Extractor, Sequence[dict[str, Any]]], index: int,
                       error: BaseException) -> SampleFailure:
        extractor, samples = job
        sample = samples[index]
        attempts = self.executor.max_retries + 1
        return SampleFailure(
            sample["sample_id"],
            "WorkerCrashed",
            f"the Ray worker died each time it ran {extractor.name} on this sample alone ({attempts} attempts; "
            f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]})",
            path=media_path(sample, extractor.modality),
        )
