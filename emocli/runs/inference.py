"""The one way to load a trained unit and score samples with it.

Training's per-epoch validation, the final test scoring, `emo evaluate` and `emo predict` all score
through `score_rows`, and everything that loads a finished unit (evaluate, predict, pretrained models,
export) goes through `TrainedUnit`: so a sample gets the same probabilities whichever command asks.

    unit = TrainedUnit.read("runs/smile-ravdess-x/seed=1/fold=0")   # cheap: JSON only
    loaded = unit.load(device="cpu")                                # model + best weights + normalisation
    predictions = loaded.score(data, rows)                          # probabilities and losses of rows
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emocli.core.errors import ConfigError, EmoError
from emocli.core.types import FeatureKind, LabelMap, Modality, Task, real_utterances
from emocli.data.batches import eval_loader
from emocli.data.inputs import InputSpec
from emocli.data.normalize import Standardizer, group_keys, standardize_groups
from emocli.data.tables import EmotionData
from emocli.runs import layout
from emocli.runs.config import TrainConfig

if TYPE_CHECKING:
    from emocli.models.base import EmotionModel
    from emocli.models.objectives import Objective
    from emocli.models.registry import ModelEntry


@dataclass
class Predictions:
    rows: np.ndarray  # [N] row positions, sorted
    probs: np.ndarray  # [N, C]
    losses: dict[str, float]  # sample-weighted means of the objective's loss terms and "loss"


@torch.no_grad()
def score_rows(
    model: torch.nn.Module,
    objective: Objective,
    data: EmotionData,
    rows: np.ndarray,
    *,
    conversation: bool,
    batch_size: int,
    device: torch.device,
    parties: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    gather: Callable[[Any], list[Any]] | None = None,
) -> Predictions:
    """Eval-mode probabilities and losses of `rows`, in sequential batches of the given size (batch
    composition matters to models that normalise over the batch). With several ranks each scores its
    share (items rank, rank + W, ...) and `gather` collects every rank's share."""
    model.eval()
    loader = eval_loader(
        data, rows, conversation=conversation, batch_size=batch_size, rank=rank, world_size=world_size,
        parties=parties,
    )
    seen, probs, sums, count = [], [], {}, 0
    for batch in loader:
        batch = batch.to(device)
        output = model(batch.inputs, batch.masks)
        terms = objective.losses(output, batch.targets, batch.utterance_mask, training=False)
        n = len(batch.rows)
        for name, value in {**terms, "loss": sum(terms.values())}.items():
            sums[name] = sums.get(name, 0.0) + float(value) * n
        count += n
        seen.append(batch.rows)
        logits = real_utterances(output.logits, batch.utterance_mask)
        probs.append(objective.probabilities(logits).float().cpu().numpy())
    shares = gather((seen, probs, sums, count)) if gather is not None else [(seen, probs, sums, count)]
    all_rows = np.concatenate([r for share in shares for r in share[0]])
    all_probs = np.concatenate([p for share in shares for p in share[1]])
    total = sum(share[3] for share in shares)
    losses = {name: sum(share[2].get(name, 0.0) for share in shares) / total for name in shares[0][2]}
    order = np.argsort(all_rows, kind="stable")
    return Predictions(all_rows[order], all_probs[order], losses)


def resolve_device(device: str | None) -> torch.device:
    """"auto" (or None): a GPU when there is one, else the CPU; otherwise the named device, checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    if chosen.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: emo runs on cpu or cuda")
    return chosen


class _RunFile(BaseModel):
    model_config = ConfigDict(extra="allow")


class UnitConfigFile(_RunFile):
    """config.json, as far as reading a unit back needs it (training writes more)."""

    model_name: str
    model: dict[str, Any]
    train: dict[str, Any]
    dataset: str = "unknown"
    store: str | None = None  # the feature store trained on


# Sizes a run's JSON may state before anything is built: far above any model or feature here (clip inputs
# of 224-pixel frames are 150,528 wide; 6,373 ComParE functionals), far below what would exhaust memory.
MAX_SIZE = 2**22
MAX_CLASSES = 10_000


class LabelMapFile(_RunFile):
    names: list[str] = Field(min_length=1, max_length=MAX_CLASSES)
    task: Task

    @field_validator("names")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("a class name is repeated")
        return names


class InputSpecFile(_RunFile):
    modality: Modality
    feature_set: str
    extractor: str
    kind: FeatureKind
    dim: int = Field(gt=0, le=MAX_SIZE)
    extractor_spec: dict[str, Any]


class FeatureSpecFile(_RunFile):
    input_unit: str = "utterance"
    inputs: dict[str, InputSpecFile] = Field(min_length=1)


def _validated(schema: type[BaseModel], data: Any, path: Path) -> Any:
    """A run file's JSON checked against what reading it needs: one line naming the file and the field."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in error.errors())
        raise EmoError(f"not a valid {path.name} ({problems})", path=path) from None


@dataclass
class TrainedUnit:
    """A unit directory (seed=S/fold=K) read back: its configuration, label map and inputs, as data.

    Everything is read as JSON and checked against its schema; the model and the extractors are looked
    up by registered name only, so nothing a run folder holds is ever imported or unpickled."""

    path: Path
    config: dict[str, Any]
    label_map_json: dict[str, Any]
    feature_spec: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> TrainedUnit:
        path = Path(path)
        files = {name: layout.read_json(path / name, dict)
                 for name in (layout.CONFIG, layout.LABEL_MAP, layout.FEATURE_SPEC)}
        _validated(UnitConfigFile, files[layout.CONFIG], path / layout.CONFIG)
        _validated(LabelMapFile, files[layout.LABEL_MAP], path / layout.LABEL_MAP)
        spec = _validated(FeatureSpecFile, files[layout.FEATURE_SPEC], path / layout.FEATURE_SPEC)
        for modality, entry in spec.inputs.items():
            if entry.modality != modality:
                raise EmoError(f"inputs.{modality} holds a {entry.modality} input", path=path / layout.FEATURE_SPEC)
        return cls(path, files[layout.CONFIG], files[layout.LABEL_MAP], files[layout.FEATURE_SPEC])

    @property
    def model_name(self) -> str:
        return self.config["model_name"]

    @property
    def entry(self) -> ModelEntry:
        from emocli.models.registry import get_model

        try:
            return get_model(self.model_name)
        except ConfigError as error:
            raise ConfigError(f"model_name: {error}", path=self.path / layout.CONFIG) from None

    @property
    def train(self) -> TrainConfig:
        try:
            return TrainConfig.model_validate(self.config["train"])
        except (TypeError, ValueError) as error:
            raise ConfigError(f"invalid training configuration: {error}", path=self.path / layout.CONFIG) from None

    @property
    def label_map(self) -> LabelMap:
        return LabelMap.from_json(self.label_map_json)

    @property
    def inputs(self) -> dict[str, InputSpec]:
        fields = InputSpecFile.model_fields
        return {m: InputSpec.from_json({k: v for k, v in s.items() if k in fields})
                for m, s in self.feature_spec["inputs"].items()}

    @property
    def conversation(self) -> bool:
        return self.feature_spec.get("input_unit") == "dialogue"

    @property
    def finished(self) -> bool:
        return (self.path / layout.TEST_METRICS).is_file()

    def build_model(self) -> EmotionModel:
        """The model of config.json with the best weights, in eval mode. Its sizes are checked before
        anything is allocated: against the label map, a bound, and the bytes its weights file holds."""
        entry = self.entry
        self._check_sizes()
        try:
            config = entry.config(**self.config["model"]).for_inference()
            self._check_parameters(entry, config)
            model = entry.build(config)
        except (TypeError, ValueError, ConfigError) as error:
            if isinstance(error, ConfigError) and error.path is not None:
                raise
            raise ConfigError(f"cannot rebuild {entry.name} from its configuration: {error}",
                              path=self.path / layout.CONFIG) from None
        missing = set(self.feature_spec["inputs"]) - set(model.config.modalities)
        if missing:
            raise ConfigError(f"feature_spec.json feeds {sorted(missing)}, which the model of config.json does not "
                              "read", path=self.path / layout.FEATURE_SPEC)
        if model.config.num_classes != len(self.label_map.names):
            raise ConfigError(
                f"the model has {model.config.num_classes} classes but label_map.json names "
                f"{len(self.label_map.names)}", path=self.path / layout.LABEL_MAP,
            )
        layout.load_weights(model, self.path / layout.WEIGHTS)
        return model.eval()

    def _check_sizes(self) -> None:
        """config.json's numbers, before they reach an allocator: its class count is the label map's, and no
        size exceeds MAX_SIZE."""
        model = self.config["model"]
        classes = model.get("num_classes") if isinstance(model, dict) else None
        names = self.label_map_json["names"]
        if isinstance(classes, int) and not isinstance(classes, bool) and classes != len(names):
            raise ConfigError(f"the model has {classes} classes but label_map.json names {len(names)}",
                              path=self.path / layout.LABEL_MAP)
        numbers = _integers(model)
        if numbers and max(numbers) > MAX_SIZE:
            raise ConfigError(f"model: a size of {max(numbers):,}, larger than any model emo builds (at most "
                              f"{MAX_SIZE:,}); not a configuration emo wrote", path=self.path / layout.CONFIG)

    def _check_parameters(self, entry: ModelEntry, config: Any) -> None:
        """The model config.json describes, counted on torch's meta device (nothing allocated), must fit in
        its weights file: as many values as it has parameters (read from the file's header alone)."""
        from emocli.models.base import count_parameters_of

        held = _stored_values(self.path / layout.WEIGHTS)
        if held is None:
            return  # missing or not safetensors: load_weights says which
        parameters = count_parameters_of(entry.model_class, config)
        if parameters > held:
            raise ConfigError(f"weights do not fit the model built from config.json: it has {parameters:,} "
                              f"parameters, the file holds {held:,} values", path=self.path / layout.WEIGHTS)

    def standardizer(self) -> Standardizer | None:
        """The feature standardisation it was trained with: None for normalize = "none", and for runs made
        before emo standardised (their config.json has no `normalize`)."""
        if self.config["train"].get("normalize", "none") not in ("standard", "speaker"):
            return None
        path = self.path / layout.NORMALIZATION
        standardizer = Standardizer.load(path)
        for modality, spec in self.inputs.items():
            if spec.kind == "clip":
                continue  # pixels: the collator's business
            if modality not in standardizer.stats:
                raise EmoError(f"no statistics for the {modality} input", path=path)
            mean, scale = standardizer.stats[modality]
            if mean.shape != (spec.dim,) or scale.shape != (spec.dim,):
                raise EmoError(f"{modality} statistics have shapes {mean.shape} and {scale.shape}, but the input has "
                               f"{spec.dim} features", path=path)
            if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
                raise EmoError(f"{modality} statistics hold non-finite values or a scale that is not positive",
                               path=path)
        return standardizer

    def load(self, device: str | None = "auto") -> LoadedUnit:
        torch_device = resolve_device(device)
        model = self.build_model().to(torch_device)
        train = self.train
        try:
            objective = self.entry.objective(train.loss, model.config)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"train.loss: {error}", path=self.path / layout.CONFIG) from None
        return LoadedUnit(self, model, objective, self.standardizer(), train, torch_device)


@dataclass
class LoadedUnit:
    """A unit ready to score: its model with the best weights on a device, objective and standardisation."""

    unit: TrainedUnit
    model: EmotionModel
    objective: Objective
    standardizer: Standardizer | None
    train: TrainConfig
    device: torch.device

    @property
    def threshold(self) -> float:
        """The multi-label decision threshold the run was evaluated with."""
        return self.train.threshold if self.train.threshold is not None else self.objective.paper_threshold

    def standardize(self, data: EmotionData) -> EmotionData:
        """The store's (or freshly extracted) features as the model was trained on them. A unit trained with
        normalize = "speaker" standardises each speaker (or recording) by its own statistics first: see
        `adapted` for which samples had enough of them."""
        return self.standardize_adapted(data)[0]

    def standardize_adapted(self, data: EmotionData) -> tuple[EmotionData, np.ndarray]:
        """`standardize`, and which samples could be (all, unless normalize = "speaker" left out speakers or
        recordings with fewer than speaker_min_samples samples)."""
        adapted = np.ones(len(data), dtype=bool)
        if self.train.normalize == "speaker":
            data, adapted = standardize_groups(data, group_keys(data.samples), self.train.speaker_min_samples)
        return (self.standardizer.apply(data) if self.standardizer is not None else data), adapted

    def score(self, data: EmotionData, rows: np.ndarray) -> Predictions:
        """Probabilities and losses of `rows` of already standardised `data`, with the run's eval batch size."""
        return score_rows(
            self.model, self.objective, data, rows, conversation=self.unit.conversation,
            batch_size=self.train.eval_batch_size, device=self.device, parties=self.model.config.speaker_parties,
        )


def _stored_values(path: Path) -> int | None:
    """How many values a safetensors file holds, from its header; None when it is not one."""
    import math
    import stat

    from safetensors import safe_open

    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None  # a pipe would block safetensors' open: load_weights refuses it unopened
        with safe_open(str(path), framework="pt") as weights:
            return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
    except Exception:  # missing, truncated, a pickle: load_weights names the problem
        return None


def _integers(data: Any) -> list[int]:
    """Every integer in nested JSON data (booleans aside), without recursion."""
    found, stack = [], [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            found.append(abs(value))
    return found


def choose_unit(run: str | Path) -> tuple[Path, str]:
    """The unit to predict with, and a sentence saying which and why.

    A unit directory (seed=S/fold=K) is used as it is. In a run root, the finished unit with the best
    validation value of the run's own selection metric is chosen (validation, never test: choosing by
    test scores would make them optimistic); units without a validation score fall back to the first.
    """
    root = Path(run)
    found = layout.units(root)
    if len(found) == 1:
        return found[0], f"model: {found[0]}"
    finished = [u for u in found if (u / layout.WEIGHTS).is_file() and (u / layout.TEST_METRICS).is_file()]
    if not finished:
        raise EmoError("no finished unit (seed=*/fold=*/test_metrics.json) in this run", path=root)
    scored = []
    for unit in finished:
        selection = TrainedUnit.read(unit).train.effective_selection()
        best_epoch = layout.read_json(unit / layout.TEST_METRICS, dict).get("best_epoch")
        records = [r for r in layout.read_jsonl(unit / layout.METRICS) if isinstance(r, dict)]
        record = next((r for r in records if r.get("epoch") == best_epoch), {})
        valid = record.get("valid")
        value = valid.get(selection.metric) if isinstance(valid, dict) else None
        if isinstance(value, (int, float)) and not math.isnan(value):
            scored.append((value if selection.mode == "max" else -value, unit, selection.metric, value))
    if not scored:
        return finished[0], f"model: {finished[0]} (the first of {len(finished)} units; none has a validation score)"
    _, unit, metric, value = max(scored, key=lambda item: item[0])
    return unit, f"model: {unit} (best validation {metric} {value:.4f} of {len(finished)} units)"
