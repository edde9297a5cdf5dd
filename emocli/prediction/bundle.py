"""A model bundle: several trained units ("heads"), each reading one modality of the same media, whose
probabilities are mapped into one shared label space and combined per segment. What `emo predict clip.mp4`
runs by default (the shipped `emo-default`: a speech head trained on RAVDESS and a text head trained on
MELD, reading Whisper's transcript).

    BUNDLE/
      bundle.json    {"name", "labels": [shared classes], "combine": "mean",
                      "heads": {"audio": {"unit": "audio", "mapping": {head class: shared class}}, ...},
                      "transcriber": "whisper-base"}
      audio/, text/  one trained unit each (a run unit folder: config, weights, card)

Each input is transcribed once; every head predicts the same segments (the transcript's timed segments,
or --window pieces when nothing is said, where a text head has nothing to read). A head's probabilities
are summed into the shared classes through its mapping (RAVDESS's calm and neutral both to neutral), and
the combined probability of a segment is the mean over the heads that read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emocli.core.errors import ConfigError, EmoError
from emocli.core.paths import check_name, inside
from emocli.core.types import Cue
from emocli.prediction.calibration import EPSILON, combination_key, tempered
from emocli.prediction.predictor import (
    ABSTAINED,
    PROBABILITY_PREFIX,
    READ,
    TRANSLATED,
    PredictionResult,
    Predictor,
    TimedText,
)
from emocli.prediction.sources import PredictFailure, Source

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from rich.progress import Progress

    from emocli.features.ray_runner import RayExecutor

BUNDLE = "bundle.json"
UNCERTAIN = "uncertain"  # the label of a segment whose combined top probability is below `uncertain_below`
# A head's own flags saying its input is not in the segment: it takes no part in the segment's combination.
ABSENT_FLAGS = frozenset({"visual:no_face", "audio:no_speech", "audio:silent"})


class HeadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str  # the head's unit folder, relative to the bundle
    mapping: dict[str, str]  # the head's class -> a shared class
    # Calibration (prediction/calibration.py), fitted on held-out predictions by `emo bundle --held-out`: the
    # head's shared probabilities p become softmax(log p / temperature).
    temperature: float = Field(1.0, gt=0)
    # Another head this one stands in for where it reads a segment: a head trained on speaker-standardised
    # features (normalize = "speaker") replaces the plain one for recordings long enough to standardise.
    replaces: str | None = None
    # modality -> the extraction preset the head reads new media with, instead of the one it was trained on (the
    # same extractor, kind and width): a face head trained on face crops reads the faces found in a video.
    extractors: dict[str, str] = {}


class BundleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    labels: list[str] = Field(min_length=1)
    heads: dict[str, HeadSpec] = Field(min_length=1)  # a bundle without heads would "predict" nothing
    # How the heads that read a segment are combined: "mean", the weighted mean of their probabilities; "product",
    # the weighted logarithmic pool p ∝ Π p_h^w_h (calibration.py). A head whose input the segment lacks (no
    # face, no speech, silence: ABSENT_FLAGS) takes no part.
    combine: Literal["mean", "product"] = "mean"
    # The heads' weights in the combination, per combination of heads that read a segment ("audio+text": names
    # sorted, joined by "+"); a combination not listed weighs its heads alike.
    weights: dict[str, dict[str, float]] = {}
    # A segment whose combined top probability is below this is labelled "uncertain" (None: never).
    uncertain_below: float | None = Field(None, gt=0, lt=1)
    calibration: dict = {}  # how temperatures and weights were fitted, and their held-out figures (for the card)
    transcriber: str = "whisper-base"
    # The languages the text heads read (ISO 639-1); speech Whisper hears in another language is translated to
    # English by Whisper itself ("translate": the segments are the translation's) or not read by the text heads
    # ("abstain": the other heads decide). Text a user gives (--text, a transcript file) is read as it is.
    text_languages: list[str] = ["en"]
    other_languages: Literal["translate", "abstain"] = "translate"
    # Sections of the card (markdown): how to rebuild the bundle, and what the weights' data allows.
    reproduce: str = ""
    licence: str = ""

    @model_validator(mode="after")
    def _check(self) -> BundleSpec:
        for name, head in self.heads.items():
            check_name(name, "head", ValueError)  # a head's name names its unit folder
            if head.replaces is not None and (head.replaces not in self.heads or head.replaces == name):
                raise ValueError(f"head {name!r} replaces {head.replaces!r}, which is not another head of the bundle")
            unknown = set(head.mapping.values()) - set(self.labels)
            if unknown:
                raise ValueError(f"head {name!r} maps to classes the bundle does not have: {sorted(unknown)}")
        return self


def is_bundle(folder: str | Path) -> bool:
    path = Path(folder) / BUNDLE
    return path.is_symlink() or path.exists() and not path.is_dir()  # a pipe too: read_bundle refuses it


def read_bundle(folder: str | Path) -> BundleSpec:
    """bundle.json, as data: a regular file of bounded size, each head's unit a folder inside the bundle."""
    from emocli.core.io import read_json

    path = Path(folder) / BUNDLE
    raw = read_json(path, dict, error=ConfigError)
    try:
        spec = BundleSpec.model_validate(raw)
    except (ValidationError, ValueError) as error:
        raise ConfigError(f"not a model bundle ({_problems(error)})", path=path) from None
    for name, head in spec.heads.items():
        inside(folder, head.unit, f"heads.{name}.unit", path)  # not ../elsewhere, not /absolute, not a link out
    return spec


def _problems(error: Exception) -> str:
    """A validation error as 'field: problem; ...' on one line."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in error.errors())
    return " ".join(str(error).split())


@dataclass
class Head:
    name: str
    predictor: Predictor
    mapping: dict[str, str]


class BundlePredictor:
    """Loads a bundle's heads once; `predict` has Predictor's interface and result, with the shared labels'
    probabilities (`prob_<label>`) and, per head, its own label and probabilities (`<head>_label`,
    `<head>_prob_<class>`)."""

    def __init__(self, folder: str | Path, device: str = "auto", workers: int = 0, executor: RayExecutor | None = None):
        from emocli.features.audio.transcribe import Transcriber
        from emocli.prediction.predictor import check_new_media_inputs, version_warning
        from emocli.runs.inference import TrainedUnit
        from emocli.runs.layout import FEATURE_SPEC

        self.folder = Path(folder)
        self.spec = read_bundle(self.folder)
        for head in self.spec.heads.values():  # before anything loads
            unit = self.folder / head.unit
            inputs = {m: spec for m, spec in TrainedUnit.read(unit).inputs.items() if m not in head.extractors}
            check_new_media_inputs(inputs, unit / FEATURE_SPEC)
        self.transcriber = Transcriber(self.spec.transcriber, device=device)
        self.heads = []
        for name, head in self.spec.heads.items():
            unit = inside(self.folder, head.unit, f"heads.{name}.unit", self.folder / BUNDLE)
            predictor = Predictor(unit, device=device, workers=workers, transcriber=self.transcriber,
                                  executor=executor, extractors=head.extractors)
            missing = set(predictor.label_map.names) - set(head.mapping)
            if missing:
                raise ConfigError(f"head {name!r} has classes its mapping lacks: {sorted(missing)}",
                                  path=self.folder / BUNDLE)
            self.heads.append(Head(name, predictor, head.mapping))
        self.model_name = self.spec.name
        self.label_names = tuple(self.spec.labels)
        self.note = f"model: {self.spec.name} ({', '.join(h.name for h in self.heads)} heads; {self.folder})"
        changes: dict[str, list[str]] = {}  # one warning for the heads' library release changes together
        for h in self.heads:
            for change, users in h.predictor.release_changes.items():
                changes.setdefault(change, []).extend(f"{h.name} head's {user}" for user in users)
        self.warnings = [w for h in self.heads for w in h.predictor.spec_warnings] + version_warning(changes)

    def predict(
        self,
        inputs: Sequence[str | Path],
        *,
        text: str | None = None,
        window_s: float = 4.0,
        progress: Progress | None = None,
        allow_outside: bool = False,
    ) -> PredictionResult:
        import numpy as np
        import pandas as pd

        from emocli.prediction.sources import collect_sources

        # Transcripts once for every head, so that every head predicts the same segments.
        sources, _ = collect_sources(inputs, text, allow_outside=allow_outside)
        transcripts = self._transcripts(sources)
        results = {h.name: h.predictor.predict(inputs, text=text, window_s=window_s, progress=progress,
                                               transcripts=transcripts, allow_outside=allow_outside)
                   for h in self.heads}
        abstained = {name for name, timed in transcripts.items() if timed.handling == ABSTAINED}
        keys = ["input", "segment"]
        # What a segment is (its times, text and where that came from): from whichever head predicted it.
        described = ["start_s", "end_s", "text", "text_source"]
        table: pd.DataFrame | None = None
        stacked = []
        for head in self.heads:
            result = results[head.name]
            part = result.table.copy()
            if head.predictor.needs("text") and abstained:  # the text heads do not read what they cannot
                keep = ~part["input"].isin(abstained).to_numpy()
                part, probabilities = part[keep].reset_index(drop=True), result.probabilities[keep]
            else:
                probabilities = result.probabilities
            shared = self._shared(probabilities, result.classes, head.mapping)
            stacked.append((part[keys], shared))
            own = {"label": f"{head.name}_label", "flags": f"{head.name}_flags",
                   **{PROBABILITY_PREFIX + c: f"{head.name}_{PROBABILITY_PREFIX}{c}" for c in result.classes}}
            renamed = part.rename(columns=own)
            if table is None:
                table = renamed
            else:
                extra = [c for c in own.values() if c in renamed.columns]
                table = table.merge(renamed[keys + described + extra], on=keys, how="outer", suffixes=("", "_other"))
                for column in described:
                    other = table.pop(f"{column}_other")
                    table[column] = table[column].where(table[column].notna(), other)
        failures, notes = self._failures(results, table, {s.name for s in sources if s.media is None})
        durations = {name: d for result in results.values() for name, d in result.durations.items()}
        if table is None or table.empty:
            empty = pd.DataFrame(columns=["input", "segment", "start_s", "end_s", "text", "text_source"])
            return PredictionResult(empty, failures, self.label_names, "single_label", None, self.folder,
                                    self.model_name, notes, durations)
        index = {key: i for i, key in enumerate(zip(table["input"], table["segment"]))}
        parts = []
        for head, (part, shared) in zip(self.heads, stacked):
            rows = np.array([index[key] for key in zip(part["input"], part["segment"])], dtype=int)
            flags = table[f"{head.name}_flags"].to_numpy()[rows] if f"{head.name}_flags" in table else []
            present = np.array([not (set(f) & ABSENT_FLAGS) if isinstance(f, list) else True for f in flags], dtype=bool)
            probs = tempered(shared, self.spec.heads[head.name].temperature)
            parts.append((head.name, rows[present], probs[present]))
        parts = self._replaced(parts)
        combined, counts = self._combine(parts, len(table))
        labels = [self.label_names[i] for i in combined.argmax(axis=1)]
        if self.spec.uncertain_below is not None:
            labels = [UNCERTAIN if top < self.spec.uncertain_below else label
                      for label, top in zip(labels, combined.max(axis=1))]
        table["label"] = labels
        table["heads"] = counts.astype(int)
        flag_columns = [c for c in table.columns if c.endswith("_flags")]
        table["flags"] = [sorted({f for c in flag_columns for f in (row[c] if isinstance(row[c], list) else [])}
                                 | ({"text:abstained"} if row["input"] in abstained else set()))
                          for _, row in table.iterrows()]
        table = table.drop(columns=flag_columns)
        for k, name in enumerate(self.label_names):
            table[PROBABILITY_PREFIX + name] = combined[:, k]
        return PredictionResult(table, failures, self.label_names, "single_label", None, self.folder, self.model_name,
                                notes, durations)

    def _failures(self, results: dict[str, PredictionResult], table: pd.DataFrame | None,
                  text_inputs: set[str]) -> tuple[list[PredictFailure], list[PredictFailure]]:
        """One failure per input (or segment) that no head predicted, with a head's reason (a text head's "no
        text here" only when no other head says more); a head's failure on what another head predicted is a
        note, unless it is what a bundle expects: a text head on silence, a media head on a text input."""
        predicted = set(zip(table["input"], table["segment"])) if table is not None else set()
        predicted_inputs = {name for name, _ in predicted}
        reported = [(head, f) for head in self.heads for f in results[head.name].failures]
        reported.sort(key=lambda pair: _reads_nothing(pair[1]))  # a stable sort: heads' order otherwise
        failures: list[PredictFailure] = []
        notes: list[PredictFailure] = []
        seen: set[tuple[str, int | None]] = set()
        for head, failure in reported:
            if self.spec.heads[head.name].replaces and _too_short_to_adapt(failure):
                continue  # the head it replaces reads that recording
            covered = (failure.input in predicted_inputs if failure.segment is None
                       else (failure.input, failure.segment) in predicted)
            if covered:
                expected = _reads_nothing(failure) or (failure.input in text_inputs and not head.predictor.needs("text"))
                if not expected:
                    notes.append(PredictFailure(failure.input, f"{head.name} head: {failure.message}", failure.segment))
                continue
            if (failure.input, None) in seen or (failure.input, failure.segment) in seen:
                continue  # one line per input: another head failed it already
            seen.add((failure.input, failure.segment))
            failures.append(failure)
        for head in self.heads:
            notes += [n for n in results[head.name].notes if n not in notes]
        return failures, notes

    def _transcripts(self, sources: Sequence[Source]) -> dict[str, TimedText]:
        """input name -> its text as timed segments, one for every medium, so that every head predicts the
        same segments: subtitle cues as they are; an untimed text (--text, a .txt beside the medium) as
        one segment over the whole medium; otherwise the transcribed speech (none for silence), translated
        by Whisper where its language is not one the text heads read (or left to the other heads)."""
        from emocli.prediction.segments import read_transcript
        from emocli.prediction.sources import probe_media

        transcripts = {}
        for source in sources:
            if source.media is None or source.segments is not None:
                continue
            try:
                cues, origin = source.transcript, source.text_source
                if cues is None and source.transcript_path is not None:
                    cues, origin = read_transcript(source.transcript_path), str(source.transcript_path)
                if cues and any(c.start_s is None for c in cues):
                    duration = probe_media(source.media).duration_s
                    cues = [Cue(0.0 if duration else None, duration, " ".join(c.text for c in cues))]
                handling = READ
                if cues is None:
                    cues, origin, handling = self._hear(source.audio or source.media)
            except EmoError:
                continue  # the heads report the medium's problem themselves
            transcripts[source.name] = TimedText(tuple(cues), origin or "", handling)
        return transcripts

    def _hear(self, medium: Path) -> tuple[tuple[Cue, ...], str, str]:
        """The medium's speech as cues, where they came from, and how the text heads take them: read as heard,
        read in Whisper's English translation, or abstained from (`text_languages`, `other_languages`)."""
        heard = self.transcriber.transcribe(medium)
        language, name = heard.language, self.transcriber.name
        if language in self.spec.text_languages or not heard.cues:
            return heard.cues, f"{name} ({language})", READ
        if self.spec.other_languages == "abstain":
            return heard.cues, f"{name} ({language}; the text heads read {', '.join(self.spec.text_languages)})", ABSTAINED
        translated = self.transcriber.with_task("translate", language).transcribe(medium)
        return translated.cues, f"{name} ({language}, translated to en)", TRANSLATED

    def _replaced(self, parts: list[tuple[str, np.ndarray, np.ndarray]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Each head's rows less those a head that replaces it reads."""
        import numpy as np

        taken: dict[str, np.ndarray] = {}
        for name, rows, _ in parts:
            replaced = self.spec.heads[name].replaces
            if replaced is not None:
                taken[replaced] = np.union1d(taken.get(replaced, rows[:0]), rows)
        out = []
        for name, rows, probs in parts:
            keep = ~np.isin(rows, taken.get(name, rows[:0]))
            out.append((name, rows[keep], probs[keep]))
        return out

    def _combine(self, parts: list[tuple[str, np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """[n, C] combined probabilities of the heads (name, rows, probabilities) that read each row, weighed
        as the spec weighs that combination of heads (a uniform distribution where none reads), and how many
        heads read each row."""
        import numpy as np

        readers: list[list[str]] = [[] for _ in range(n)]
        for name, rows, _ in parts:
            for row in rows:
                readers[row].append(name)
        weight_of = [self.spec.weights.get(combination_key(names), {}) for names in readers]
        counts = np.array([len(names) for names in readers], dtype=float)
        total = np.zeros(n)
        accumulated = np.zeros((n, len(self.label_names)))
        for name, rows, probs in parts:
            weight = np.array([weight_of[row].get(name, 1.0) for row in rows])
            total[rows] += weight
            contribution = np.log(np.clip(probs, EPSILON, 1.0)) if self.spec.combine == "product" else probs
            accumulated[rows] += weight[:, None] * contribution
        if self.spec.combine == "product":
            accumulated -= accumulated.max(axis=1, keepdims=True)
            combined = np.exp(accumulated)
        else:
            combined = accumulated / np.maximum(total, EPSILON)[:, None]
        combined[total == 0] = 1.0
        return combined / combined.sum(axis=1, keepdims=True), counts

    def _shared(self, probs: np.ndarray, classes: Sequence[str], mapping: dict[str, str]) -> np.ndarray:
        import numpy as np

        shared = np.zeros((len(probs), len(self.label_names)))
        for k, name in enumerate(classes):
            shared[:, self.label_names.index(mapping[name])] += probs[:, k]
        return shared


def _too_short_to_adapt(failure: Any) -> bool:
    """A speaker-standardised head's "this recording is too short for its own statistics": the head it replaces
    predicts the recording instead."""
    return "standardises each recording by its own statistics" in failure.message


def _reads_nothing(failure: Any) -> bool:
    """A text head's "no text here" (silence, music): not a failure of the bundle, whose speech head still
    predicts the segment."""
    return "needs text" in failure.message


# Files of a unit a bundle ships: what loading and its card need, not its training logs or plots.
SHIPPED_FILES = ("config.json", "model.safetensors", "normalization.safetensors", "label_map.json", "feature_spec.json",
                 "test_metrics.json", "README.md")


def read_held_out(path: Path, mapping: dict[str, str], labels: Sequence[str]):  # -> calibration.HeldOut
    """A head's held-out predictions (a parquet of `label` and `prob_<class>` in the head's classes: `emo evaluate`'s
    predictions-<split>.parquet, or `emo cross-corpus`'s <learner>-predictions.parquet, of which the rows of the
    corpora left out are read) in the bundle's shared classes."""
    import numpy as np
    import pandas as pd

    from emocli.prediction.calibration import HeldOut

    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read held-out predictions ({error})", path=path) from None
    if "protocol" in table:
        table = table[table["protocol"] == "loco"]
    classes = [c.removeprefix(PROBABILITY_PREFIX) for c in table.columns if c.startswith(PROBABILITY_PREFIX)]
    unknown = (set(classes) | set(table.get("label", []))) - set(mapping)
    if "label" not in table or not classes or unknown:
        raise ConfigError("held-out predictions need a label column and prob_<class> columns of the head's classes"
                          + (f" (not the head's: {sorted(unknown)})" if unknown else ""), path=path)
    probs = np.zeros((len(table), len(labels)))
    for name in classes:
        probs[:, labels.index(mapping[name])] += table[PROBABILITY_PREFIX + name].to_numpy()
    return HeldOut(probs, np.array([labels.index(mapping[name]) for name in table["label"]]))


def assemble(spec_path: str | Path, heads: dict[str, str | Path], out: str | Path, *,
             held_out: dict[str, Path] | None = None, cross_corpus: dict[str, list[Path]] | None = None,
             overwrite: bool = False) -> Path:
    """A bundle folder from a bundle spec (bundle.json without units: name, labels, heads' mappings,
    transcriber) and one trained unit per head; writes `out`/bundle.json, a unit folder per head and a
    README card naming each head's training data, test figures, licence and weights' sha256.

    `held_out`: each head's held-out predictions (read_held_out): the heads are calibrated and their product
    weighed on them (calibration.calibrate), and the card reports how. `cross_corpus`: a head's `emo cross-corpus`
    folders, whose tables (results.md) the card shows. The card lists every corpus each head trained on (from
    its training split) with that corpus's licence.

    `out` must be new or empty, or `overwrite` given; it is never the folder of the spec or a head's run
    (nor holds or lies in one). It is written beside itself and renamed into place when complete."""
    import hashlib
    import shutil

    from emocli.core.io import read_json, replace_folder, write_text
    from emocli.core.paths import check_output_folder
    from emocli.runs import layout
    from emocli.runs.inference import TrainedUnit, choose_unit

    spec_path, out = Path(spec_path), Path(out)
    for name in heads:
        check_name(name, "--head")
    check_output_folder(out, overwrite=overwrite, inputs=[spec_path, *heads.values()])
    raw = read_json(spec_path, dict, error=ConfigError)
    given = raw.get("heads", {})
    if not isinstance(given, dict) or not all(isinstance(h, dict) for h in given.values()):
        raise ConfigError("heads: expected an object of head name -> {mapping}", path=spec_path)
    unknown = set(heads) ^ set(given)
    if unknown:
        raise ConfigError(f"heads given and heads of the spec differ: {sorted(unknown)}", path=spec_path)
    for name in given:
        given[name]["unit"] = name
    try:
        spec = BundleSpec.model_validate(raw)
    except (ValidationError, ValueError) as error:
        raise ConfigError(f"not a bundle spec ({_problems(error)})", path=spec_path) from None
    if held_out:
        spec = calibrated(spec, held_out, spec_path)
    rows, hashes, sources = [], [], []
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, run in heads.items():
        unit, _ = choose_unit(run)
        trained = TrainedUnit.read(unit)
        missing = set(trained.label_map.names) - set(spec.heads[name].mapping)
        if missing:
            raise ConfigError(f"head {name!r}: the mapping lacks the unit's classes {sorted(missing)}", path=spec_path)
        (staging / name).mkdir()
        for file in SHIPPED_FILES:
            if (unit / file).is_file():
                shutil.copyfile(unit / file, staging / name / file)
        weights = hashlib.sha256((unit / "model.safetensors").read_bytes()).hexdigest()
        metrics = layout.read_json(unit / layout.TEST_METRICS, dict)["metrics"]
        features = ", ".join(f"{m}: {s.extractor_spec.get('params', {}).get('model') or s.extractor_spec.get('extractor')}"
                             for m, s in trained.inputs.items())
        config = trained.config
        sources.append(f"- {name}: " + training_sources(unit, config["dataset"]))
        split = f"fold {config['fold']}" if config["fold"] is not None else "its official splits"
        rows.append(f"| {name} | {trained.model_name} | {config['dataset']}, {split}, seed {config['seed']} | {features} | "
                    f"{metrics.get('accuracy', float('nan')) * 100:.2f} | {metrics.get('weighted_f1', float('nan')) * 100:.2f} | "
                    f"{_recipe_summary(Path(run))} |")
        hashes.append(f"- {name}/model.safetensors: `{weights}`")
    write_text(staging / BUNDLE, spec.model_dump_json(indent=2) + "\n")
    mapping = "\n".join(f"- {name}: " + ", ".join(f"{k} → {v}" for k, v in head.mapping.items())
                        for name, head in spec.heads.items())
    card = (f"# {spec.name}\n\n{spec.description}\n\n## Heads\n\n"
            "| head | model | trained on | features | test accuracy % | test weighted F1 % | "
            "its recipe's test accuracy % (mean ± std over its units) |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
            "\n\nEach head ships one trained unit; its own card (its README.md) gives its data, protocol, results "
            "and licence.\n\nWeights (sha256):\n\n" + "\n".join(hashes) + "\n\n"
            f"## Shared labels\n\n{', '.join(spec.labels)}; each head's classes map onto them:\n\n{mapping}\n\n"
            "The combined probability of a segment is the mean of the mapped probabilities of the heads that "
            f"read it. Speech is transcribed with {spec.transcriber}.\n")
    card += "\n## Training data\n\nEach head learnt from these datasets (its training split), under their terms:\n\n"
    card += "\n".join(sources) + "\n"
    for name, folders in (cross_corpus or {}).items():
        for folder in folders:
            table = Path(folder) / "results.md"
            if not table.is_file():
                raise ConfigError("no results.md: give the folder `emo cross-corpus` wrote", path=table)
            report = read_json(Path(folder) / "results.json", dict, error=ConfigError)
            card += (f"\n## The {name} head's recipe across corpora ({Path(folder).name})\n\nUnweighted average recall "
                     "on each corpus left out of training (open: over every class the head knows; shared: over the "
                     "classes the corpus and the training corpora share), and on its speakers left out, for the head's "
                     "recipe (`linear`, the learner of its run) and the linear floor on the same features "
                     f"(`emo cross-corpus`, protocols {', '.join(report.get('protocols', []))}"
                     + (f", {', '.join(report['evaluate_only'])} never trained on" if report.get("evaluate_only") else "")
                     + "):\n\n" + table.read_text(encoding="utf-8"))
    if spec.calibration:
        card += calibration_section(spec)
    for title, text in (("Reproduce", spec.reproduce), ("Licence", spec.licence)):
        if text:
            card += f"\n## {title}\n\n{text}\n"
    write_text(staging / "README.md", card)
    return replace_folder(staging, out)


def training_sources(unit: Path, dataset: str) -> str:
    """The datasets a unit trained on, each with its licence: the corpora of its training split's samples (a
    `corpora` store prefixes their ids with the corpus), or its one dataset."""
    from emocli.datasets import ADAPTERS, adapter_class
    from emocli.runs import layout

    ids = layout.read_json(unit / layout.SPLITS, dict).get("train", [])
    names = sorted({str(i).split("/", 1)[0] for i in ids}) if dataset == "corpora" else [dataset]
    described = []
    for name in names:
        licence = adapter_class(name).licence if name in ADAPTERS else None
        terms = f"{licence.name}: {licence.meaning}" if licence is not None else "your own data"
        count = sum(str(i).startswith(f"{name}/") for i in ids) if dataset == "corpora" else len(ids)
        described.append(f"{name} ({count} samples; {terms})")
    return "; ".join(described)


def calibrated(spec: BundleSpec, held_out: dict[str, Path], where: Path) -> BundleSpec:
    """The spec with each head's temperature, the product's weights per combination of heads and the figures of
    both (calibration.calibrate on every head's held-out predictions)."""
    from emocli.prediction.calibration import calibrate, coverage, tempered

    if set(held_out) != set(spec.heads):
        raise ConfigError(f"--held-out is needed for every head ({', '.join(spec.heads)}), got {', '.join(held_out)}",
                          path=where)
    labels = list(spec.labels)
    data = {name: read_held_out(Path(path), spec.heads[name].mapping, labels) for name, path in held_out.items()}
    fitted = calibrate(data, len(labels))
    heads = {name: head.model_copy(update={"temperature": round(fitted["temperatures"][name], 4)})
             for name, head in spec.heads.items()}
    report = {"sources": {name: str(path) for name, path in held_out.items()}, **fitted}
    if spec.uncertain_below is not None:
        report["uncertain"] = {name: coverage(tempered(d.probs, fitted["temperatures"][name]), d.labels,
                                              spec.uncertain_below) for name, d in data.items()}
    weights = {key: {head: round(w, 4) for head, w in ws.items()} for key, ws in fitted["weights"].items()}
    return spec.model_copy(update={"heads": heads, "weights": weights, "combine": "product", "calibration": report})


def calibration_section(spec: BundleSpec) -> str:
    """The card's account of calibration and fusion, from the figures `calibrated` recorded."""
    report, fitted = spec.calibration, spec.calibration["report"]
    lines = ["\n## Calibration and fusion\n",
             "Each head's probabilities are calibrated with a temperature fitted on its held-out predictions, and the "
             "heads that read a segment are combined as a weighted product (prediction/calibration.py). No labelled "
             "data holds a face, a voice and words of one person offline, so the weights are fitted on pairings of "
             "the heads' held-out predictions of the same emotion, made from one half of them, and reported on "
             "pairings of the other half: the heads err independently there, so the fused figures are an upper "
             "bound of what fusion adds on real media.\n",
             "| head | held-out predictions | n | temperature | NLL before → after | UAR % alone (pairings) |",
             "|---|---|---|---|---|---|"]
    for name, head in spec.heads.items():
        r = fitted[name]
        lines.append(f"| {name} | {report['sources'][name]} | {r['n_held_out']} | {head.temperature:.3f} | "
                     f"{r['nll_before']:.3f} → {r['nll_after']:.3f} | {r['uar'] * 100:.2f} |")
    lines += ["", "| heads reading a segment | weights | UAR % fused | accuracy % fused |", "|---|---|---|---|"]
    for key, weights in spec.weights.items():
        shown = ", ".join(f"{head} {w:.2f}" for head, w in weights.items())
        lines.append(f"| {key} | {shown} | {fitted[key]['uar'] * 100:.2f} | {fitted[key]['accuracy'] * 100:.2f} |")
    if "uncertain" in report:
        lines += ["", f"A segment whose combined top probability is under {spec.uncertain_below} is labelled "
                  "\"uncertain\" (a policy: calibrated, such a label is right less often than that). On each head's "
                  "held-out predictions alone:", "",
                  "| head | labelled | accuracy of the labelled % | accuracy of the uncertain % |", "|---|---|---|---|"]
        for name, c in report["uncertain"].items():
            lines.append(f"| {name} | {c['kept'] * 100:.1f} % | {c['accuracy_kept'] * 100:.2f} | "
                         f"{c['accuracy_uncertain'] * 100:.2f} |")
    return "\n".join(lines) + "\n"


def _recipe_summary(run: Path) -> str:
    """The run's test accuracy over all its units (results.json), when the head was given a run folder."""
    from emocli.runs import layout

    results = run / layout.RESULTS_JSON
    if not results.is_file():
        return "—"
    summary = layout.read_json(results, dict)["summary"]
    mean, std, n = summary["mean"].get("accuracy"), summary["std"].get("accuracy"), summary["n"]
    return "—" if mean is None else f"{mean * 100:.2f} ± {(std or 0) * 100:.2f} (n={n})"
