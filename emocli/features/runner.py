"""Running extractors over samples: worker processes for CPU extractors, batches for neural encoders.

One code path serves both the feature store (`FeatureStore.extract`, which commits results as they
stream in) and `emo predict` (`extract_samples`, which keeps everything in memory):

* CPU extractors (`batch_size == 1`: openSMILE, librosa, tables) run in a `spawn` process pool. Each
  worker builds every extractor of the run once, in the pool's initializer, and receives samples in
  chunks so that inter-process overhead stays small next to the extraction itself.
* Neural encoders (`batch_size > 1`) run in the main process, `batch_size` samples at a time, where
  they can use the GPU or all CPU threads.
* `workers=0` runs everything in the calling process (debugging; platforms without `spawn` comfort).

A sample that cannot be extracted never stops a run: its result is a `SampleFailure` carrying the error
type, message and traceback tail. Only a broken extractor (one that cannot even be built) is fatal.

This module imports nothing heavy at the top: it is what each worker process imports first, and the
worker must limit native thread pools before numpy or torch load (see `_init_worker`).
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import traceback
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emocli.core.errors import EmoError, ExtractionError

if TYPE_CHECKING:
    import pandas as pd
    from rich.progress import Progress

    from emocli.core.types import Features
    from emocli.features.base import Extractor
    from emocli.features.ray_runner import RayExecutor

TRACEBACK_LINES = 8  # enough to see the failing call inside the library, short enough for a table cell
CHUNKS_PER_WORKER = 4  # chunks in flight per worker: keeps workers busy while results stream back
MAX_CHUNK = 16


class SampleFailure(ExtractionError):
    """Why one sample could not be extracted. A result value: the runner returns it, never raises it."""

    def __init__(
        self,
        sample_id: str,
        error_type: str,
        message: str,
        traceback_tail: str = "",
        path: str | os.PathLike | None = None,
    ):
        self.sample_id = sample_id
        self.error_type = error_type
        self.message = message
        self.traceback_tail = traceback_tail
        super().__init__(f"sample {sample_id!r}: {error_type}: {message}", path=path)

    def __reduce__(self):  # exceptions pickle their args by default; ours has keyword-rich state
        return (
            SampleFailure,
            (self.sample_id, self.error_type, self.message, self.traceback_tail, self.path),
        )

    @classmethod
    def from_exception(cls, sample_id: str, error: BaseException, path: str | None) -> SampleFailure:
        if isinstance(error, EmoError):  # it already names the file and problem precisely
            message, path = error.problem, error.path or path
        else:
            message = str(error) or repr(error)
        lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
        return cls(sample_id, type(error).__name__, message, "\n".join(lines[-TRACEBACK_LINES:]), path)


def media_path(sample: Mapping[str, Any], modality: str) -> str | None:
    """The file an extractor of `modality` reads for `sample` (None for text)."""
    if modality == "audio":
        return sample.get("audio_path") or sample.get("video_path")
    if modality == "visual":
        return sample.get("video_path")
    return None


def check_features(extractor: Extractor, features: Features) -> None:
    """Reject outputs that do not match what the extractor declares: they would corrupt a feature set.

    NaN or infinite values fail the sample, or become 0 when the extractor's `nonfinite` is "zero"."""
    import numpy as np

    values = features.values
    if extractor.kind == "vector":
        if values.shape != (extractor.dim,):
            raise ExtractionError(f"expected a vector of {extractor.dim} values, got shape {values.shape}")
    else:
        if features.times is None or values.ndim != 2 or values.shape[1] != extractor.dim:
            raise ExtractionError(
                f"expected a sequence [T, {extractor.dim}] with frame times, got shape {values.shape}"
            )
        if len(values) == 0:
            raise ExtractionError("no frames (empty or too short input)")
        if not np.isfinite(features.times).all():
            raise ExtractionError("frame times contain NaN or infinite values")
    finite = np.isfinite(values)
    if not finite.all():
        if getattr(extractor.params, "nonfinite", "fail") == "zero":
            features.values = np.where(finite, values, np.float32(0))
            return
        raise ExtractionError(
            f"{int((~finite).sum())} of {values.size} feature values are NaN or infinite "
            "(the extractor's parameter nonfinite=zero stores them as 0)"
        )


def extract_one(extractor: Extractor, sample: Mapping[str, Any]) -> Features | SampleFailure:
    try:
        features = extractor.extract(sample)
        check_features(extractor, features)
        return features
    except Exception as error:  # noqa: BLE001 - any failure of one input is recorded, never fatal
        return SampleFailure.from_exception(
            sample["sample_id"], error, media_path(sample, extractor.modality)
        )


def extract_batch(extractor: Extractor, samples: Sequence[Mapping[str, Any]]) -> list[Features | SampleFailure]:
    """One batch through a batched encoder; a failing batch is retried sample by sample to isolate the culprit."""
    try:
        outputs = extractor.extract_batch(samples)
    except Exception:  # noqa: BLE001 - narrowed down below, one sample at a time
        return [extract_one(extractor, sample) for sample in samples]
    results: list[Features | SampleFailure] = []
    for sample, features in zip(samples, outputs, strict=True):
        try:
            check_features(extractor, features)
            results.append(features)
        except ExtractionError as error:
            results.append(SampleFailure.from_exception(sample["sample_id"], error, media_path(sample, extractor.modality)))
    return results


def runs_in_main_process(extractor: Extractor, workers: int) -> bool:
    return workers == 0 or extractor.batch_size > 1 or not extractor.portable


# --- worker side -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtractorRecipe:
    """How a worker rebuilds an extractor: plain strings and JSON, so unpickling imports nothing."""

    key: str  # the feature set name
    module: str
    class_name: str
    params: dict[str, Any]

    @classmethod
    def of(cls, extractor: Extractor) -> ExtractorRecipe:
        kind = type(extractor)
        return cls(extractor.feature_set_name, kind.__module__, kind.__qualname__, extractor.params.model_dump(mode="json"))

    def build(self) -> Extractor:
        kind = getattr(importlib.import_module(self.module), self.class_name)
        return kind(kind.Params.model_validate(self.params))


_worker_extractors: dict[str, Extractor] = {}
_worker_init_error: BaseException | None = None

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """End this worker process when the process that started it ends, however it ends (even kill -9).

    A killed `emo extract` must not leave its workers (and through them multiprocessing's resource
    tracker, which lives as long as anyone holds its pipe) running. On Linux the kernel sends SIGKILL at
    the parent's death (prctl PR_SET_PDEATHSIG); everywhere, a daemon thread also waits on the parent's
    sentinel, which multiprocessing closes when the parent dies, and ends the process.
    """
    import multiprocessing
    import signal
    import sys
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the thread below still does it
        if os.getppid() != parent.pid:  # the parent died before prctl took effect
            os._exit(1)

    def watch() -> None:
        from multiprocessing.connection import wait as wait_for

        wait_for([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="emo-parent-watch", daemon=True).start()


def _init_worker(recipes: Sequence[ExtractorRecipe]) -> None:
    die_with_parent()
    # One worker per core: native libraries must not each start a thread per core on top of that.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    global _worker_init_error
    try:
        for recipe in recipes:
            _worker_extractors[recipe.key] = recipe.build()
    except BaseException as error:  # noqa: BLE001 - reported by the first task instead of a silent broken pool
        _worker_init_error = error


def _ready() -> None:
    """A first task: returns once a worker has started and built its extractors."""
    if _worker_init_error is not None:
        raise _worker_init_error


def _run_chunk(key: str, samples: list[dict[str, Any]]) -> list[Features | SampleFailure]:
    if _worker_init_error is not None:
        raise _worker_init_error
    extractor = _worker_extractors[key]
    return [extract_one(extractor, sample) for sample in samples]


# --- main side ---------------------------------------------------------------------------------------

JobResult = tuple[int, int, "Features | SampleFailure"]  # (job, index into that job's samples, result)


class ExtractionRunner:
    """Owns the worker pool of one extraction run; `run_jobs` streams results.

    Use as a context manager. The pool starts only when a CPU extractor has work, so a run whose features
    are all cached spawns nothing.
    """

    def __init__(self, extractors: Sequence[Extractor], workers: int = 2):
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.workers = workers
        self._pooled = [e for e in extractors if not runs_in_main_process(e, workers)]
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ExtractionRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._shutdown()

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # fork + native libraries/threads deadlocks
                initializer=_init_worker,
                initargs=([ExtractorRecipe.of(e) for e in self._pooled],),
            )
            # A pool whose workers die before any sample (an unguarded script's `__main__` re-run by
            # spawn, a missing library) would otherwise look like every sample crashing a worker.
            try:
                pool.submit(_ready).result()
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                raise ExtractionError(
                    "the worker processes died while starting; run with --workers 0 to see why. "
                    "Scripts that extract with workers must guard their entry point with "
                    "`if __name__ == '__main__':`"
                ) from None
            self._pool = pool
        return self._pool

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run_jobs(self, jobs: Sequence[tuple[Extractor, Sequence[dict[str, Any]]]]) -> Iterator[JobResult]:
        """Several extractors' samples (plain dicts of the canonical columns): the pooled ones as one stream
        of chunks, so the workers go from one feature set to the next without waiting for the slowest chunk
        of the first; then the extractors that run in this process. Yields (job, index, result) in
        completion order."""
        pooled = [job for job, (e, samples) in enumerate(jobs) if samples and not runs_in_main_process(e, self.workers)]
        if pooled:
            yield from self._run_pooled(jobs, pooled)
        for job, (extractor, samples) in enumerate(jobs):
            if not samples or not runs_in_main_process(extractor, self.workers):
                continue
            step = max(1, extractor.batch_size)
            order = extractor.batch_order(samples) or range(len(samples))
            for start in range(0, len(order), step):
                indices = order[start : start + step]
                batch = [samples[index] for index in indices]
                outputs = extract_batch(extractor, batch) if step > 1 else [extract_one(extractor, batch[0])]
                for index, output in zip(indices, outputs, strict=True):
                    yield job, index, output

    def _run_pooled(
        self, jobs: Sequence[tuple[Extractor, Sequence[dict[str, Any]]]], pooled: list[int]
    ) -> Iterator[JobResult]:
        """The `pooled` jobs' samples in the worker pool, as one queue of chunks of (job, sample indices)."""
        keys = {job: jobs[job][0].feature_set_name for job in pooled}  # the spec is hashed once, not per chunk
        total = sum(len(jobs[job][1]) for job in pooled)
        chunk = max(1, min(MAX_CHUNK, math.ceil(total / (self.workers * CHUNKS_PER_WORKER))))
        pending: deque[tuple[int, list[int]]] = deque(
            (job, list(range(start, min(start + chunk, len(jobs[job][1])))))
            for job in pooled
            for start in range(0, len(jobs[job][1]), chunk)
        )
        # A native crash (a segfault on a corrupt file) kills a worker and breaks the whole pool, failing
        # every chunk in flight. Those samples become suspects, each retried alone in a fresh pool: one
        # that crashes alone is the culprit and is recorded as a failure; the others are extracted.
        suspects: deque[tuple[int, int]] = deque()
        in_flight: dict[Future, tuple[int, list[int]]] = {}

        def submit(pool: ProcessPoolExecutor, job: int, indices: list[int]) -> None:
            future = pool.submit(_run_chunk, keys[job], [jobs[job][1][i] for i in indices])
            in_flight[future] = (job, indices)

        while pending or suspects or in_flight:
            pool = self._start_pool()
            if suspects and not in_flight:
                job, index = suspects.popleft()
                submit(pool, job, [index])
            while not suspects and pending and len(in_flight) < self.workers * CHUNKS_PER_WORKER:
                submit(pool, *pending.popleft())
            alone = len(in_flight) == 1 and len(next(iter(in_flight.values()))[1]) == 1
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                job, indices = in_flight.pop(future)
                try:
                    for index, result in zip(indices, future.result()):
                        yield job, index, result
                except BrokenProcessPool:
                    broken = True
                    extractor, samples = jobs[job]
                    if alone:
                        yield job, indices[0], self._crash_failure(extractor, samples[indices[0]])
                    else:
                        suspects.extend((job, i) for i in indices)
            if broken:
                for job, indices in in_flight.values():
                    suspects.extend((job, i) for i in indices)
                in_flight.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    @staticmethod
    def _crash_failure(extractor: Extractor, sample: dict[str, Any]) -> SampleFailure:
        return SampleFailure(
            sample["sample_id"],
            "WorkerCrashed",
            f"the worker process died while running {extractor.name} on this sample",
            path=media_path(sample, extractor.modality),
        )


# --- in-memory extraction (emo predict) --------------------------------------------------------------

def sample_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a sample table as plain dicts, missing values as None (what extractors receive)."""
    records = table.to_dict(orient="records")
    import pandas as pd

    for record in records:
        for column, value in record.items():
            if not isinstance(value, (list, tuple)) and pd.isna(value):
                record[column] = None
    return records


def extract_samples(
    extractors: Sequence[Extractor],
    samples: pd.DataFrame,
    workers: int = 0,
    progress: Progress | None = None,
    executor: RayExecutor | None = None,
) -> dict[str, list[Features | SampleFailure]]:
    """Extract every sample of a table with every extractor, without a store.

    `samples` is a canonical sample table (see emocli.datasets.base). Returns, per feature set name, one
    result per row in table order: the Features, or the SampleFailure that says why there are none.
    `workers=0` (the default) suits a handful of files, where starting worker processes costs more than
    it saves; `executor` runs the extraction on a Ray cluster instead.
    """
    from emocli.features.presets import feature_set_label, preset_of

    jobs = [(extractor, sample_records(extractor.prepare(samples))) for extractor in extractors]
    outputs: list[list[Features | SampleFailure | None]] = [[None] * len(records) for _, records in jobs]
    tasks = [progress.add_task(feature_set_label(e.feature_set_name, preset_of(e.name, e.identity_params())),
                               total=len(records)) if progress else None for e, records in jobs]
    announce = progress.console.print if progress is not None and not progress.disable else None
    runner = ExtractionRunner(extractors, workers) if executor is None else executor.runner(announce)
    with runner:
        for job, index, result in runner.run_jobs(jobs):
            outputs[job][index] = result
            if progress is not None:
                progress.advance(tasks[job])
    return {extractor.feature_set_name: out for (extractor, _), out in zip(jobs, outputs)}  # type: ignore[misc]


@contextmanager
def hub_progress_bars(enabled: bool) -> Iterator[None]:
    """Hugging Face's own progress bars (transformers' "Loading weights", hub downloads) off while disabled,
    as they were afterwards. They print even when stderr is not a terminal, so `-q` has to silence them."""
    if enabled:
        yield
        return
    from huggingface_hub import utils as hub_utils

    were_enabled = not hub_utils.are_progress_bars_disabled()
    hub_utils.disable_progress_bars()  # read by transformers when it is first imported
    if (transformers_logging := sys.modules.get("transformers.utils.logging")) is not None:
        transformers_logging.disable_progress_bar()  # imported before: its own switch
    try:
        yield
    finally:
        if were_enabled:
            hub_utils.enable_progress_bars()
            if (transformers_logging := sys.modules.get("transformers.utils.logging")) is not None:
                transformers_logging.enable_progress_bar()


def progress_bar(enabled: bool = True) -> Progress:
    """A rich progress display with counts and rate; silent when disabled or stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
    )

