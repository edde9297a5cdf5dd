"""Cross-corpus protocols: how well a learner recognises emotions in speakers and corpora it never saw.

Writes `results.json` (every unit's metrics and the summary), `results.md` (the table) and, per learner,
`<learner>-predictions.parquet`: every unit's test rows with their probabilities, held out by construction
(what a bundle's calibration and fusion are fitted on: `emo bundle --held-out`).

On a store of several corpora (the `corpora` dataset: a `corpus` column, each corpus's own speaker folds in
`corpus_fold`, labels in emo's shared emotions), each learner is trained and tested in two protocols:

- leave one corpus out (`loco`): for each corpus, train on all the others, test on it. Validation speakers
  are carved from the training corpora (never from the test corpus), so selection never sees it;
- within the corpus (`within`): for each corpus, its own speaker folds, training and testing on it alone,
  validation speakers carved from its training speakers. What the same learner reaches when the corpus's
  studio, language and actors are known: the figure papers usually report;
- new speakers of a known corpus (`speakers`): each corpus's own speaker folds held out in turn, training on
  everything else (its other speakers and all the other corpora): the situation of a model trained on every
  corpus (the shipped one) meeting a new speaker of a studio it knows.

Metrics per test corpus: unweighted average recall (UAR: mean recall over the classes the test corpus has,
the speech-emotion field's measure for unbalanced classes), accuracy and per-class recall. Two readings of
the same predictions: `open`, the argmax over every class the learner was trained on (what `emo predict`
answers: a "surprised" on EmoDB, which has no surprised, counts as an error), and `shared`, the argmax over
the classes both the training corpora and the test corpus have (the literature's cross-corpus reading).

Learners: `floor` (standardised logistic regression, class-balanced, C chosen on the validation speakers'
UAR; see baseline.py for the within-dataset floor) or any registered model with its training configuration
(trained by the same UnitTrainer as `emo train`, selection on validation only). Optional per-group
standardisation of the features before learning (`normalize_by`: corpus or speaker, statistics of the
group's own samples, labels unused): how much of the gap is the corpus's or the speaker's offset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from emocli.core.errors import ConfigError
from emocli.data.normalize import standardize_groups
from emocli.data.splits import carve, training_only
from emocli.data.tables import EmotionData

Protocol = Literal["loco", "within", "speakers"]
PROTOCOLS: tuple[Protocol, ...] = ("loco", "within", "speakers")
GROUPINGS = ("none", "corpus", "speaker")
FLOOR = "floor"
C_GRID = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class ProtocolUnit:
    """One train/valid/test split of a protocol, for one seed."""

    protocol: Protocol
    corpus: str  # the test corpus
    part: int | None  # within: the corpus's own fold held out
    seed: int
    rows: dict[str, np.ndarray] = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.protocol}-{self.corpus}" + (f"-fold{self.part}" if self.part is not None else "")


def corpora_of(samples: pd.DataFrame, where: str = "store") -> list[str]:
    if "corpus" not in samples or samples["corpus"].isna().any():
        raise ConfigError(f"cross-corpus protocols read a store of several corpora (`emo extract --dataset corpora`): "
                          f"the {where} has no corpus column for every sample")
    names = list(dict.fromkeys(samples["corpus"].astype(str)))
    if len(names) < 2:
        raise ConfigError(f"cross-corpus protocols need two corpora or more; the {where} holds {names}")
    return names


def protocol_units(samples: pd.DataFrame, seeds: Sequence[int], protocols: Sequence[Protocol] = PROTOCOLS,
                   valid_fraction: float = 0.1, corpora: Sequence[str] | None = None,
                   evaluate_only: Sequence[str] = ()) -> list[ProtocolUnit]:
    """Every split of the protocols for every seed; validation speakers are carved reproducibly by seed. Corpora in
    `evaluate_only` (a licence that allows no training, say) are tested on and never trained on."""
    names = corpora_of(samples)
    for option, given in (("--corpus", corpora or []), ("--evaluate-only", evaluate_only)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(f"{option}: the store has no corpus {unknown[0]!r}; it holds {', '.join(names)}")
    tested = list(corpora) if corpora else names
    corpus = samples["corpus"].astype(str).to_numpy()
    speakers = samples["speaker"].astype(str)
    folds = samples["corpus_fold"] if "corpus_fold" in samples else pd.Series(pd.NA, index=samples.index)
    rows = np.arange(len(samples))
    trainable = ~np.isin(corpus, list(evaluate_only))
    if "evaluate_only" in samples:  # what the corpora dataset was told
        trainable &= ~samples["evaluate_only"].fillna(False).to_numpy(dtype=bool)
    units = []
    for seed in seeds:
        for name in tested:
            if "loco" in protocols:
                pool = rows[(corpus != name) & trainable]
                train, valid = _carve(pool, speakers, valid_fraction, seed)
                units.append(ProtocolUnit("loco", name, None, seed,
                                          {"train": train, "valid": valid, "test": rows[corpus == name]}))
            own = folds[corpus == name].dropna()
            for part in sorted(int(k) for k in own.unique()) if own.nunique() > 1 else []:
                held = (corpus == name) & (folds == part).fillna(False).to_numpy(dtype=bool)
                for protocol in ("within", "speakers"):
                    if protocol not in protocols:
                        continue
                    if protocol == "within":
                        pool = rows[(corpus == name) & ~held & folds.notna().to_numpy()]
                    else:
                        pool = rows[~held & (trainable | (corpus == name))]
                    train, valid = _carve(pool, speakers, valid_fraction, seed)
                    units.append(ProtocolUnit(protocol, name, part, seed, {"train": train, "valid": valid,
                                                                           "test": rows[held]}))
    return [ProtocolUnit(u.protocol, u.corpus, u.part, u.seed, training_only(samples, u.rows)) for u in units]


def _carve(pool: np.ndarray, speakers: pd.Series, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation speakers carved from the training pool; none where it holds a single speaker (TESS within itself
    trains on one actress): the floor then takes its largest C and a model its last epoch."""
    if speakers.iloc[pool].nunique() < 2:
        return pool, pool[:0]
    return carve(pool, speakers, fraction, seed)


def group_standardize(data: EmotionData, by: str) -> EmotionData:
    """Each group's (corpus or speaker) features standardised by the group's own statistics (labels unused)."""
    if by == "none":
        return data
    return standardize_groups(data, data.samples[by].astype(str).to_numpy())[0]


def corpus_metrics(y_true: np.ndarray, probs: np.ndarray, names: Sequence[str], trained: np.ndarray) -> dict[str, Any]:
    """UAR, accuracy and per-class recall of one test corpus, read open (argmax over the trained classes) and
    shared (argmax over the classes both the training data and the test corpus have)."""
    present = np.unique(y_true)
    result: dict[str, Any] = {"n": int(len(y_true)), "classes": [names[k] for k in present]}
    masked = np.where(np.isin(np.arange(len(names)), trained), probs, -np.inf)
    shared_classes = np.intersect1d(present, trained)
    for reading, allowed in (("open", trained), ("shared", shared_classes)):
        scores = np.where(np.isin(np.arange(len(names)), allowed), masked, -np.inf)
        predicted = scores.argmax(axis=1)
        keep = np.isin(y_true, allowed) if reading == "shared" else np.ones(len(y_true), dtype=bool)
        recall = {names[k]: float((predicted[keep][y_true[keep] == k] == k).mean()) for k in present
                  if (y_true[keep] == k).any()}
        result[reading] = {"uar": float(np.mean(list(recall.values()))) if recall else float("nan"),
                           "accuracy": float((predicted[keep] == y_true[keep]).mean()) if keep.any() else float("nan"),
                           "recall": recall}
    return result


def uar(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted average recall: the mean over the classes y_true has of the share of each predicted right."""
    return float(np.mean([(predicted[y_true == k] == k).mean() for k in np.unique(y_true)]))


def _design(data: EmotionData) -> np.ndarray:
    return np.concatenate([np.stack([v.mean(axis=0) if v.ndim == 2 else v for v in values])
                           for values in data.features.values()], axis=1)


def fit_floor(x: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray], n_classes: int) -> tuple[np.ndarray, dict]:
    """Standardised, class-balanced logistic regression with C chosen on the validation rows' UAR; the test
    rows' probabilities over all n_classes (0 for classes absent from training) and what was chosen."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(c: float):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight="balanced"))
        return model.fit(x[rows["train"]], y[rows["train"]])

    def probabilities(model, part: str) -> np.ndarray:
        full = np.zeros((len(rows[part]), n_classes))
        full[:, model.classes_] = model.predict_proba(x[rows[part]])
        return full

    fitted = {c: fit(c) for c in C_GRID}
    if len(rows["valid"]):
        valid = {c: uar(y[rows["valid"]], probabilities(m, "valid").argmax(1)) for c, m in fitted.items()}
        best = max(C_GRID, key=lambda c: valid[c])
    else:
        valid, best = {}, C_GRID[-1]
    return probabilities(fitted[best], "test"), {"C": best, "valid_uar": valid.get(best)}


@dataclass
class LearnerResult:
    learner: str
    units: list[dict[str, Any]]
    inputs: dict[str, str] = field(default_factory=dict)  # modality -> feature set read
    predictions: list[pd.DataFrame] = field(default_factory=list)  # each unit's test rows: ids, label, probabilities


def unit_predictions(data: EmotionData, unit: ProtocolUnit, probs: np.ndarray) -> pd.DataFrame:
    """A unit's test predictions as a table: what calibration and fusion are fitted on (held-out by construction)."""
    rows = unit.rows["test"]
    names = list(data.label_map.names)
    table = pd.DataFrame({"unit": unit.name, "protocol": unit.protocol, "seed": unit.seed,
                          "sample_id": data.samples["sample_id"].iloc[rows].to_numpy(),
                          "corpus": data.samples["corpus"].iloc[rows].to_numpy(),
                          "label": [names[k] for k in np.asarray(data.targets)[rows]]})
    for k, name in enumerate(names):
        table[f"prob_{name}"] = probs[:, k]
    return table


def run_floor(data: EmotionData, units: list[ProtocolUnit], progress: Callable[[str], None]) -> LearnerResult:
    x, y = _design(data), np.asarray(data.targets)
    names = list(data.label_map.names)
    results, predictions = [], []
    for unit in units:
        probs, chosen = fit_floor(x, y, unit.rows, len(names))
        predictions.append(unit_predictions(data, unit, probs))
        trained = np.unique(y[unit.rows["train"]])
        metrics = corpus_metrics(y[unit.rows["test"]], probs, names, trained)
        results.append({"unit": unit.name, "protocol": unit.protocol, "corpus": unit.corpus, "part": unit.part,
                        "seed": unit.seed, **chosen, **metrics})
        progress(f"{FLOOR} {unit.name} seed {unit.seed}: UAR {metrics['open']['uar'] * 100:.1f} "
                 f"(shared classes {metrics['shared']['uar'] * 100:.1f})")
    return LearnerResult(FLOOR, results, predictions=predictions)


def run_model(plan: Any, data: EmotionData, units: list[ProtocolUnit], out: Path, console: Any,
              progress: Callable[[str], None]) -> LearnerResult:
    """Each protocol unit trained as an `emo train` unit would be (its folder under `out`), then its test rows
    scored with the weights chosen on validation."""
    from emocli.runs import layout
    from emocli.runs.inference import TrainedUnit
    from emocli.training.distributed import setup_distributed
    from emocli.training.loop import UnitTrainer

    ctx = setup_distributed(None)
    y, names = np.asarray(data.targets), list(data.label_map.names)
    results, predictions = [], []
    for unit in units:
        folder = out / unit.name / f"seed={unit.seed}"
        if not (folder / layout.TEST_METRICS).is_file():
            UnitTrainer(plan, data, ctx, folder, unit.seed, None, console, splits=unit.rows,
                        protocol={"name": unit.protocol, "test_corpus": unit.corpus, "corpus_fold": unit.part}).fit()
        loaded = TrainedUnit.read(folder).load("cpu")
        probs = loaded.score(loaded.standardize(data), unit.rows["test"]).probs
        predictions.append(unit_predictions(data, unit, probs))
        trained = np.unique(y[unit.rows["train"]])
        metrics = corpus_metrics(y[unit.rows["test"]], probs, names, trained)
        results.append({"unit": unit.name, "protocol": unit.protocol, "corpus": unit.corpus, "part": unit.part,
                        "seed": unit.seed, "folder": str(folder), **metrics})
        progress(f"{plan.entry.name} {unit.name} seed {unit.seed}: UAR {metrics['open']['uar'] * 100:.1f} "
                 f"(shared classes {metrics['shared']['uar'] * 100:.1f})")
    return LearnerResult(plan.entry.name, results, predictions=predictions)


def summarize(results: list[LearnerResult], corpora: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (learner, test corpus): LOCO UAR over seeds and within-corpus UAR over folds and seeds (mean,
    std, n), in both readings, and the per-class recall of LOCO averaged over seeds."""
    rows = []
    for result in results:
        frame = pd.DataFrame(result.units)
        for corpus in corpora:
            row: dict[str, Any] = {"learner": result.learner, "corpus": corpus}
            for protocol in PROTOCOLS:
                part = frame[(frame["protocol"] == protocol) & (frame["corpus"] == corpus)] if len(frame) else frame
                for reading in ("open", "shared"):
                    values = [u[reading]["uar"] for u in part.to_dict("records")]
                    row[f"{protocol}_{reading}"] = _stats(values)
                    row[f"{protocol}_{reading}_accuracy"] = _stats([u[reading]["accuracy"] for u in part.to_dict("records")])
                if protocol == "loco" and len(part):
                    recalls = pd.DataFrame([u["open"]["recall"] for u in part.to_dict("records")])
                    row["loco_recall"] = {k: float(v) for k, v in recalls.mean().items()}
            rows.append(row)
    return rows


def _stats(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v == v]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def markdown(summary: list[dict[str, Any]], seeds: Sequence[int]) -> str:
    """The cross-corpus table: per test corpus and learner, UAR % left out (open / shared classes) and within."""
    def cell(stats: dict[str, float] | None) -> str:
        return "—" if stats is None else f"{stats['mean'] * 100:.2f} ± {stats['std'] * 100:.2f}"

    columns = [("loco_open", "left out: UAR % (open)"), ("loco_shared", "left out: UAR % (shared classes)"),
               ("speakers_open", "its speakers left out, all corpora trained: UAR %"),
               ("within_open", "within (its speaker folds): UAR %")]
    shown = [(key, title) for key, title in columns if any(row.get(key) for row in summary)]
    lines = ["| test corpus | learner | " + " | ".join(title for _, title in shown) + " |",
             "|---|---|" + "---|" * len(shown)]
    for row in summary:
        lines.append(f"| {row['corpus']} | {row['learner']} | " + " | ".join(cell(row.get(key)) for key, _ in shown) + " |")
    lines.append("")
    lines.append(f"Mean ± std over seeds {', '.join(map(str, seeds))} (left out) and over folds × seeds (speaker "
                 "folds).")
    return "\n".join(lines) + "\n"


def cross_corpus(
    store_path: str | Path,
    learners: Sequence[str],
    configs: dict[str, Any],
    out: str | Path,
    *,
    seeds: Sequence[int] = (1,),
    protocols: Sequence[Protocol] = PROTOCOLS,
    corpora: Sequence[str] | None = None,
    evaluate_only: Sequence[str] = (),
    normalize_by: str = "none",
    modalities: list[str] | None = None,
    features: dict[str, str] | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Every learner through the protocols on one store; writes `out`/results.json and results.md and returns the
    results. `configs`: a resolved TrainConfig per registered model among `learners` (the floor needs none)."""
    from rich.console import Console

    from emocli.core.io import make_folder, write_text, write_with
    from emocli.data.inputs import select_inputs, store_label_map
    from emocli.data.tables import load_data
    from emocli.features.store import FeatureStore
    from emocli.runs import layout
    from emocli.training.baseline import LinearReader
    from emocli.training.prepare import plan

    console = console or Console(stderr=True)
    if normalize_by not in GROUPINGS:
        raise ConfigError(f"normalize_by must be one of {', '.join(GROUPINGS)}, not {normalize_by!r}")
    store = FeatureStore(store_path)
    samples = store.samples()
    names = corpora_of(samples)
    out = Path(out)
    make_folder(out)
    results: list[LearnerResult] = []
    say = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    for learner in learners:
        if learner == FLOOR:
            label_map = store_label_map(store)
            inputs = select_inputs(store, LinearReader(), modalities=modalities, choices=features)
            data = group_standardize(load_data(store, inputs, label_map), normalize_by)
            units = protocol_units(data.samples, seeds, protocols, corpora=corpora, evaluate_only=evaluate_only)
            results.append(run_floor(data, units, say))
            results[-1].inputs = {m: spec.feature_set for m, spec in inputs.items()}
        else:
            run = plan(learner, store.path, configs[learner])
            data = group_standardize(run.load_data(), normalize_by)
            units = protocol_units(data.samples, seeds, protocols, run.config.split.valid_fraction, corpora=corpora,
                                   evaluate_only=evaluate_only)
            results.append(run_model(run, data, units, out / learner, console, say))
            results[-1].inputs = {m: spec.feature_set for m, spec in run.inputs.items()}
    tested = list(corpora) if corpora else names
    summary = summarize(results, tested)
    report = {
        "store": str(store.path), "corpora": names, "tested": tested, "evaluate_only": list(evaluate_only),
        "seeds": list(seeds),
        "protocols": list(protocols), "normalize_by": normalize_by,
        "inputs": {r.learner: r.inputs for r in results},
        "summary": summary, "units": {r.learner: r.units for r in results},
    }
    layout.write_json(out / "results.json", report)
    for result in results:
        table = pd.concat(result.predictions, ignore_index=True)
        write_with(out / f"{result.learner}-predictions.parquet", lambda path: table.to_parquet(path, index=False))
    write_text(out / "results.md", markdown(summary, seeds))
    return report
