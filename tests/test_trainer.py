"""The training loop (emocli/training/loop.py, trainer.py), the train steps (steps.py) and the models'
objectives, on tiny data."""

from __future__ import annotations

import json

import pytest
import torch
from test_training_data import make_store

from emocli.data.batches import Batch
from emocli.models.base import ModelOutput
from emocli.models.mmer import MMERObjective
from emocli.models.objectives import ClassificationObjective
from emocli.models.smile import SmileObjective
from emocli.models.spikemo import SpikEmoObjective
from emocli.runs import layout
from emocli.runs.config import TrainConfig
from emocli.runs.evaluation import evaluate_unit
from emocli.training.config import resolve_config
from emocli.training.steps import PerturbationStep
from emocli.training.trainer import train_run

SMALL_CFNSR = ["model.video_dim=16", "model.transformer_layers=1", "model.transformer_heads=2", "batch_size=16",
               "optimizer.lr=3e-3"]


def config(model="cfnsr", extra=(), **fields) -> TrainConfig:
    base = SMALL_CFNSR if model == "cfnsr" else []
    return resolve_config(model, overrides=[*base, "epochs=3", *extra], **fields)


def history(unit):
    """metrics.jsonl without the wall-clock times."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in layout.read_jsonl(unit / layout.METRICS)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"), n=72)


@pytest.fixture(scope="module")
def finished(store, tmp_path_factory):
    """One finished two-seed run, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("runs")
    summary = train_run("cfnsr", store.path, config(seeds=[1, 2], folds=[0]), out=out, name="a")
    return summary


def test_run_directory_layout(finished):
    root = finished.root
    assert root.name == "cfnsr-toy-a"
    for name in ("run.json", "results.csv", "results.json", "README.md"):
        assert (root / name).is_file(), name
    for seed in (1, 2):
        unit = layout.unit_dir(root, seed, 0)
        for name in (
            "model.safetensors", "normalization.safetensors", "config.json", "label_map.json", "feature_spec.json",
            "splits.json", "metrics.jsonl", "test_metrics.json", "README.md", "learning_curves.png", "confusion_matrix.png",
        ):
            assert (unit / name).is_file(), (seed, name)
        assert not (unit / layout.CHECKPOINT).exists()  # removed once the unit is finished
        spec = layout.read_json(unit / "feature_spec.json")
        assert spec["input_unit"] == "utterance"
        assert spec["inputs"]["audio"]["extractor_spec"]["extractor"] == "precomputed-toy-audio"
        assert "versions" in spec["inputs"]["audio"]["extractor_spec"]
        cfg = layout.read_json(unit / "config.json")
        assert cfg["model"]["modalities"]["audio"] == {"dim": 6, "kind": "sequence"}
        assert cfg["train"]["optimizer"]["lr"] == 3e-3 and cfg["train"]["epochs"] == 3
        records = layout.read_jsonl(unit / layout.METRICS)
        assert [r["epoch"] for r in records] == [1, 2, 3]
        assert {"loss", "accuracy"} <= set(records[0]["train"]) and {"loss", "weighted_f1"} <= set(records[0]["valid"])
        assert "test" not in records[0]  # standard protocol: the test split is never looked at while training
        splits = layout.read_json(unit / "splits.json")
        assert not set(splits["valid"]) & set(splits["test"]) and not set(splits["train"]) & set(splits["valid"])


def test_results_table_has_mean_and_std(finished):
    import pandas as pd

    table = pd.read_csv(finished.root / layout.RESULTS_CSV)
    assert table["seed"].astype(str).tolist() == ["1", "2", "mean", "std"]
    rows = (finished.root / layout.RESULTS_CSV).read_text().splitlines()
    best = [layout.read_json(layout.unit_dir(finished.root, seed, 0) / layout.TEST_METRICS)["best_epoch"] for seed in (1, 2)]
    assert [row.split(",")[1:4] for row in rows[1:3]] == [[str(seed), "0", str(epoch)] for seed, epoch in zip((1, 2), best)]
    accuracies = table["accuracy"].tolist()
    assert accuracies[2] == pytest.approx((accuracies[0] + accuracies[1]) / 2)
    results = layout.read_json(finished.root / layout.RESULTS_JSON)
    assert results["summary"]["n"] == 2 and results["protocol"] == "standard"
    assert "per_class.calm.f1" in results["summary"]["mean"]


def test_results_keep_the_validation_score_of_the_selected_weights(finished):
    import pandas as pd

    scores = []
    for seed in (1, 2):
        unit = layout.unit_dir(finished.root, seed, 0)
        stored = layout.read_json(unit / layout.TEST_METRICS)
        best = next(r for r in layout.read_jsonl(unit / layout.METRICS) if r["epoch"] == stored["best_epoch"])
        assert stored["selection_score"] == {"split": "valid", "metric": "accuracy", "value": best["valid"]["accuracy"]}
        scores.append(best["valid"]["accuracy"])
    table = pd.read_csv(finished.root / layout.RESULTS_CSV)
    assert table["selection_score"].tolist()[:3] == pytest.approx([*scores, sum(scores) / 2])
    assert layout.read_json(finished.root / layout.RESULTS_JSON)["summary"]["std"]["selection_score"] == pytest.approx(
        abs(scores[0] - scores[1]) / 2**0.5
    )


def test_a_run_is_found_by_what_trains_not_by_how_it_was_spelled(finished, store):
    # The model's own default spelled out, and the feature set named by its name: the same run.
    feature_set = layout.read_json(layout.unit_dir(finished.root, 1, 0) / layout.FEATURE_SPEC)["inputs"]["audio"]["feature_set"]
    spelled = config(extra=["model.audio_dropout=0.4"], seeds=[1, 2], folds=[0], features={"audio": feature_set})
    again = train_run("cfnsr", store.path, spelled, out=finished.root.parent)
    assert again.skipped and again.root == finished.root


def test_two_configurations_started_in_the_same_second_get_two_runs(store, tmp_path, monkeypatch):
    import datetime as dt

    from emocli.training import prepare

    class FrozenClock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 1, 12, 0, 0)

    monkeypatch.setattr(prepare, "datetime", FrozenClock)
    first = train_run("cfnsr", store.path, config(extra=["epochs=1"], seeds=[1], folds=[0]), out=tmp_path)
    second = train_run("cfnsr", store.path, config(extra=["epochs=2"], seeds=[1], folds=[0]), out=tmp_path)
    assert first.root.name == "cfnsr-toy-20260101-120000" and second.root.name == "cfnsr-toy-20260101-120000-2"
    assert not second.skipped and len(layout.read_jsonl(layout.unit_dir(second.root, 1, 0) / layout.METRICS)) == 2


def test_evaluate_reproduces_the_stored_test_metrics_exactly(finished):
    unit = layout.unit_dir(finished.root, 1, 0)
    stored = layout.read_json(unit / layout.TEST_METRICS)
    again = json.loads(json.dumps(evaluate_unit(unit, "test")))
    assert again["metrics"] == stored["metrics"]
    assert again["metrics"]["accuracy"] > 0.6  # the synthetic problem is easy


def test_rerunning_a_finished_run_does_nothing(finished, store):
    weights = layout.unit_dir(finished.root, 1, 0) / layout.WEIGHTS
    before = weights.stat().st_mtime_ns
    again = train_run("cfnsr", store.path, config(seeds=[1, 2], folds=[0]), out=finished.root.parent)
    assert again.skipped and again.root == finished.root  # found by its configuration, without --name
    assert weights.stat().st_mtime_ns == before


def test_same_seed_same_metrics_and_resume_matches_an_uninterrupted_run(finished, store, tmp_path):
    reference = layout.unit_dir(finished.root, 1, 0)

    class Interrupt:
        def on_unit_start(self, unit, description):
            assert description["config"]["model_name"] == "cfnsr"

        def on_epoch_end(self, unit, record):
            if record["epoch"] == 2:
                raise KeyboardInterrupt

        def on_unit_end(self, unit, result):
            raise AssertionError("interrupted before the end")

    cfg = config(seeds=[1], folds=[0])
    with pytest.raises(KeyboardInterrupt):
        train_run("cfnsr", store.path, cfg, out=tmp_path, name="b", callbacks=[Interrupt()])
    unit = layout.unit_dir(tmp_path / "cfnsr-toy-b", 1, 0)
    assert (unit / layout.CHECKPOINT).is_file() and not (unit / layout.TEST_METRICS).exists()
    assert layout.load_checkpoint(unit / layout.CHECKPOINT)["epoch"] == 2

    train_run("cfnsr", store.path, cfg, out=tmp_path, name="b")
    assert history(unit) == history(reference)
    assert layout.read_json(unit / layout.TEST_METRICS)["metrics"] == layout.read_json(reference / layout.TEST_METRICS)["metrics"]


def test_paper_protocol_selects_on_test_and_says_so(store, tmp_path):
    summary = train_run("cfnsr", store.path, config(seeds=[1], folds=[2], protocol="paper"), out=tmp_path)
    unit = layout.unit_dir(summary.root, 1, 2)
    records = layout.read_jsonl(unit / layout.METRICS)
    assert "test" in records[0] and "valid" not in records[0]  # CFN-SR's rule: no validation, the fold decides
    best = max(range(len(records)), key=lambda i: (records[i]["test"]["accuracy"], -i))
    stored = layout.read_json(unit / layout.TEST_METRICS)
    assert stored["best_epoch"] == best + 1
    assert "PAPER PROTOCOL" in stored["warning"]
    assert "PAPER PROTOCOL" in layout.read_json(summary.root / layout.RESULTS_JSON)["warning"]
    assert "PAPER PROTOCOL" in (unit / "README.md").read_text()
    splits = layout.read_json(unit / "splits.json")
    assert not splits["valid"]


def test_multi_label_spiking_run_reports_firing_rates_and_energy(tmp_path):
    store = make_store(tmp_path / "store", n=48, task="multi_label")
    summary = train_run("smile", store.path, config("smile", ["batch_size=16"], seeds=[1], folds=[0]), out=tmp_path)
    unit = layout.unit_dir(summary.root, 1, 0)
    result = layout.read_json(unit / layout.TEST_METRICS)
    assert result["metrics"]["threshold"] == 0.35  # SMILE's paper threshold
    assert {"jaccard_accuracy", "hamming_loss", "micro_f1", "macro_f1"} <= set(result["metrics"])
    assert result["spiking"]["firing_rates"] and result["spiking"]["energy"]["energy_pj_per_sample"] > 0
    card = (unit / "README.md").read_text()
    assert "pJ" in card or "energy" in card.lower()
    assert len(result["label_confusion"]) == 3
    records = layout.read_jsonl(unit / layout.METRICS)
    assert records[0]["lr"] == 1e-3 and "bce" in records[0]["train"]
    threshold = evaluate_unit(unit, "test", threshold=0.9)["metrics"]
    assert threshold["threshold"] == 0.9


# ------------------------------------------------------------------------------------------ steps


class Toy(torch.nn.Module):
    """A model with a 'tri-modal encoder' and a masked branch, like MMER's interface."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.encoder = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, classes)
        self.seen: list[torch.Tensor] = []

    def perturbation_parameters(self):
        return list(self.encoder.parameters())

    def forward(self, inputs, masks):
        self.seen.append(self.encoder.weight.detach().clone())
        h = torch.tanh(self.encoder(inputs["x"]))
        return ModelOutput(self.head(h), {"masked_logits": self.head(h * 0.5)})


def toy_batch(multi: bool) -> Batch:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, generator=g)
    targets = (torch.rand(8, 3, generator=g) > 0.5).float() if multi else torch.arange(8) % 3
    return Batch({"x": x}, {}, targets, rows=None)


def toy_config(task: str = "multi_label"):
    from emocli.models.base import ModelConfig

    return ModelConfig(modalities={"x": {"dim": 4, "kind": "vector"}}, num_classes=3, task=task)


def test_mmer_step_perturbs_the_encoder_then_restores_it_before_the_update():
    model = Toy()
    step = PerturbationStep({}, MMERObjective({}, toy_config()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: what is left is exactly the restore
    out = step.train_step(model, toy_batch(True), optimizer, clip=1.0)
    assert set(out.losses) == {"main", "masked", "kl", "loss"}
    assert len(model.seen) == 2  # the clean and the perturbed forward
    shift = model.seen[1] - model.seen[0]
    grad_direction = model.encoder.weight.grad  # accumulated: includes the KL term's gradient now
    assert torch.linalg.vector_norm(shift).item() == pytest.approx(1.0, rel=1e-5)  # ε · g / ‖g‖
    assert grad_direction is not None
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]), name  # restored before optimizer.step

    # The ASL term carries MMER's ×1000; the masked branch its 0.1.
    plain = Toy()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()})
    batch = toy_batch(True)
    terms = step.objective.losses(plain({"x": batch.inputs["x"]}, {}), batch.targets, None, training=True)
    assert terms["main"].item() > 10 and terms["masked"].item() < terms["main"].item()


def test_mmer_step_without_perturbation_is_one_forward():
    model = Toy()
    step = PerturbationStep({"epsilon": 0.0}, MMERObjective({}, toy_config()))
    step.train_step(model, toy_batch(True), torch.optim.SGD(model.parameters(), lr=0.1), clip=None)
    assert len(model.seen) == 1


def test_smile_step_smooths_targets_in_training_only():
    objective = SmileObjective({}, toy_config())
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    train = objective.losses(ModelOutput(torch.zeros(2, 3)), targets, None, training=True)["bce"]
    valid = objective.losses(ModelOutput(torch.full((2, 3), 3.0)), targets, None, training=False)["bce"]
    smoothed = objective.losses(ModelOutput(torch.full((2, 3), 3.0)), targets, None, training=True)["bce"]
    assert train.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-5)  # BCE at p = 0.5
    assert valid.item() != pytest.approx(smoothed.item())
    assert SmileObjective.paper_threshold == 0.35 and ClassificationObjective.paper_threshold == 0.5


def test_spikemo_objective_terms_follow_faithful_or_the_loss_table():
    from emocli.models.spikemo import SpikEmoConfig

    modalities = {m: {"dim": 4, "kind": "vector"} for m in ("text", "audio")}
    faithful = SpikEmoObjective({}, SpikEmoConfig(modalities=modalities, num_classes=3, faithful=True))
    paper = SpikEmoObjective({"terms": "ce+dsc+hgr"}, SpikEmoConfig(modalities=modalities, num_classes=3, faithful=True))
    assert set(faithful.weights) == {"ce"} and set(paper.weights) == {"ce", "dsc", "hgr"}
    mask = torch.tensor([[True, True, False], [True, False, False]])
    targets = torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(1)
    output = ModelOutput(
        torch.randn(2, 3, 3, generator=g),
        {"fused_text": torch.randn(2, 3, 5, generator=g), "fused_audio": torch.randn(2, 3, 5, generator=g)},
    )
    assert set(faithful.losses(output, targets, mask, training=True)) == {"ce"}
    terms = paper.losses(output, targets, mask, training=True)
    assert set(terms) == {"ce", "dsc", "hgr"}
    assert terms["ce"].item() == pytest.approx(
        0.4 * torch.nn.functional.cross_entropy(output.logits[mask], targets).item(), rel=1e-6
    )


def test_conversation_model_trains_on_whole_dialogues(tmp_path):
    store = make_store(tmp_path / "store", n=96, dialogues=True, kinds=("vector", "vector"))
    small = [
        "model.model_dim=16", "model.spike_steps=2", "model.fusion_layers=1", "model.fusion_heads=2",
        "model.spike_heads=2", "model.mlp_hidden=16", "batch_size=4", "optimizer.lr=1e-3", "epochs=2",
    ]
    summary = train_run("spikemo", store.path, resolve_config("spikemo", overrides=small, seeds=[1], folds=[0]), out=tmp_path)
    unit = layout.unit_dir(summary.root, 1, 0)
    splits = layout.read_json(unit / "splits.json")
    samples = store.samples().set_index("sample_id")
    dialogues = {name: set(samples.loc[ids, "dialogue_id"]) for name, ids in splits.items()}
    assert not dialogues["train"] & dialogues["valid"] and not dialogues["valid"] & dialogues["test"]
    assert not dialogues["train"] & dialogues["test"]
    result = layout.read_json(unit / layout.TEST_METRICS)
    assert result["metrics"]["n_samples"] == len(splits["test"])  # every test utterance, once
    assert layout.read_json(unit / "feature_spec.json")["input_unit"] == "dialogue"
    assert evaluate_unit(unit, "test")["metrics"] == result["metrics"]
