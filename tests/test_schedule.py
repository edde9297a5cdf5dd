"""Learning-rate schedules (training/schedule.py), MMER's warm-up cosine in particular."""

import math

import pytest
import torch

from emocli.runs.config import SchedulerConfig
from emocli.training.config import resolve_config
from emocli.training.schedule import EpochSchedule, warmup_cosine


def rates(config: SchedulerConfig, epochs: int, lr: float = 5e-5) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = EpochSchedule(config, optimizer, epochs)
    return [schedule.before_epoch(e) for e in range(epochs)]


def test_mmer_recipe_warms_up_to_its_peak_then_decays_and_never_climbs_again():
    config = resolve_config("mmer", overrides=["epochs=50"])
    lrs = rates(config.scheduler, config.epochs, config.optimizer.lr)
    assert lrs[0] == pytest.approx(5e-6)
    assert max(lrs) == pytest.approx(5e-5) and lrs.index(max(lrs)) == 10  # the warm-up reaches lr
    after = lrs[10:]
    assert all(b <= a + 1e-15 for a, b in zip(after, after[1:]))  # never rises after the warm-up
    assert lrs[-1] == pytest.approx(0.5 * 5e-5 * (1 + math.cos(math.pi * 39 / 40)))  # the cycle spans the run


def test_the_rate_holds_its_minimum_after_the_cycle():
    config = SchedulerConfig(name="warmup_cosine", warmup_epochs=2, warmup_lr_init=0.0, cycle_epochs=4, min_lr=1e-6)
    lrs = rates(config, 12, lr=1e-3)
    assert lrs[6:] == pytest.approx([1e-6] * 6)
    assert all(b <= a for a, b in zip(lrs[2:], lrs[3:]))


def test_mmer_faithful_schedule_is_the_released_one():
    config = resolve_config("mmer", "mmer-faithful")
    lrs = rates(config.scheduler, config.epochs, config.optimizer.lr)
    assert lrs == pytest.approx([5e-6 + max(0, e - 1) * 4.5e-6 for e in range(10)])
    assert max(lrs) == pytest.approx(4.1e-5)  # the released run never reaches lr = 5e-5


def test_without_prefix_the_cosine_is_read_at_the_epoch_itself():
    config = SchedulerConfig(name="warmup_cosine", warmup_prefix=False, warmup_epochs=10)
    assert warmup_cosine(9, 5e-5, config, 30) == pytest.approx(4.55e-5)
    assert warmup_cosine(10, 5e-5, config, 30) == pytest.approx(0.5 * 5e-5 * (1 + math.cos(math.pi / 3)))
    assert warmup_cosine(45, 5e-5, config, 30) == 0.0  # past the cycle: min_lr, not a second rise


def test_step_schedule():
    lrs = rates(SchedulerConfig(name="step", step_size=10, gamma=0.95), 25, lr=1e-4)
    assert lrs[9] == pytest.approx(1e-4) and lrs[10] == pytest.approx(0.95e-4) and lrs[20] == pytest.approx(0.95**2 * 1e-4)
