"""The training loop: learning, determinism, exact resume, checkpoint errors, the NaN guard, LR groups and schedules."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stnlib import SpatialTransformer
from stnlib.io import safe_torch_load
from stnlib.spatial_transformer import localisation_parameters
from stnlib.train import (
    Callback,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    classification_loss,
    count_parameters,
    evaluate,
    lr_factor,
)

DIM = 4


class SeparableData:
    """Two classes in R^4 separated by the plane x . w = 0 with a margin; the batch for a step is fixed by the step."""

    def __init__(self, batch_size: int = 32, seed: int = 0):
        self.batch_size, self.seed = batch_size, seed
        self.w = F.normalize(torch.tensor([1.0, -2.0, 0.5, 1.5]), dim=0)

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))
        side = torch.where(x @ self.w > 0, 1.0, -1.0)
        x = x + 0.5 * side[:, None] * self.w  # push each point 0.5 away from the plane
        return x, (side > 0).long()

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(self.batch_size, 1_000_003 * self.seed + step)


def dropout_model() -> nn.Module:
    # Dropout makes the trainer's seed and the saved RNG state matter, so the tests below can fail.
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


def config(**overrides) -> TrainConfig:
    base = dict(steps=20, lr=0.02, device="cpu", progress=False, log_every=3, checkpoint_every=5)
    return TrainConfig(**{**base, **overrides})


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_loss_goes_down_and_separable_data_is_learned(tmp_path):
    data = SeparableData()
    torch.manual_seed(0)
    model = nn.Linear(DIM, 2)
    cfg = config(steps=100, lr=0.1, log_every=10, eval_every=50, checkpoint_every=50, progress=True)
    result = Trainer(model, cfg, run_dir=tmp_path).fit(data, eval_data=data.sample(500, seed=-1))
    history = result["history"]
    assert [h["step"] for h in history] == list(range(10, 101, 10))
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    assert result["final_eval"]["error"] == 0.0
    assert [e["step"] for e in result["eval_history"]] == [50, 100]
    assert result["steps"] == 100 and result["wall_time_s"] > 0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert TrainConfig.from_dict(saved["config"]) == cfg
    assert saved["steps_per_s"] > 0 and saved["hardware"]["torch_version"] == torch.__version__
    assert saved["final_eval"] == result["final_eval"]


def test_same_seed_is_bit_identical_and_another_seed_differs():
    runs = []
    for seed in (0, 0, 1):
        model = dropout_model()
        result = Trainer(model, config(seed=seed)).fit(SeparableData())
        runs.append((result["history"], weights(model)))
    assert runs[0][0] == runs[1][0]
    assert_same_weights(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]
    assert not torch.equal(runs[0][1]["0.weight"], runs[2][1]["0.weight"])


class InterruptAt(Callback):
    def __init__(self, step: int):
        self.at = step

    def on_step_end(self, trainer, step, metrics):
        if step == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("interrupt_at, resume_step", [(7, 5), (11, 10)])  # checkpoints every 5 steps
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, capsys, interrupt_at, resume_step):
    data, eval_data = SeparableData(), SeparableData().sample(100, seed=-1)
    cfg = config(eval_every=4)

    reference = dropout_model()
    expected = Trainer(reference, cfg).fit(data, eval_data)

    with pytest.raises(KeyboardInterrupt):
        Trainer(dropout_model(), cfg, callbacks=[InterruptAt(interrupt_at)], run_dir=tmp_path).fit(data, eval_data)
    assert safe_torch_load(tmp_path / "checkpoint.pt")["step"] == resume_step
    # A fresh process would rebuild the model from scratch and draw other random numbers first.
    torch.manual_seed(1234)
    resumed = dropout_model()
    result = Trainer(resumed, cfg, run_dir=tmp_path).fit(data, eval_data)

    assert f"Resumed from step {resume_step} of 20" in capsys.readouterr().out
    assert_same_weights(weights(resumed), weights(reference))
    assert result["history"] == expected["history"]
    assert result["eval_history"] == expected["eval_history"]
    assert result["final_eval"] == expected["final_eval"]


def test_resume_refuses_a_different_config_and_allows_cosmetic_changes(tmp_path):
    data = SeparableData()
    Trainer(nn.Linear(DIM, 2), config(steps=6), run_dir=tmp_path).fit(data)
    with pytest.raises(ValueError, match=r"lr: checkpoint 0\.02, now 0\.03.*new run_dir"):
        Trainer(nn.Linear(DIM, 2), config(steps=6, lr=0.03), run_dir=tmp_path).fit(data)
    # Watching a run differently is not a different run: a finished run just reopens.
    model = nn.Linear(DIM, 2)
    result = Trainer(model, config(steps=6, log_every=50, progress=True), run_dir=tmp_path).fit(data)
    assert result["steps"] == 6 and [h["step"] for h in result["history"]] == [3, 6]


class RecordEvery(Callback):
    """Keeps the bias of the model at every 3rd step in ``trainer.records``."""

    def on_step_end(self, trainer, step, metrics):
        if step % 3 == 0:
            trainer.records.setdefault("bias", []).append({"step": step, "bias": trainer.model.bias.detach().clone()})


def test_callback_records_survive_an_interruption(tmp_path):
    data = SeparableData()
    torch.manual_seed(0)
    expected = Trainer(nn.Linear(DIM, 2), config(), callbacks=[RecordEvery()]).fit(data)["records"]["bias"]
    with pytest.raises(KeyboardInterrupt):
        torch.manual_seed(0)
        Trainer(nn.Linear(DIM, 2), config(), callbacks=[RecordEvery(), InterruptAt(11)], run_dir=tmp_path).fit(data)
    result = Trainer(nn.Linear(DIM, 2), config(), callbacks=[RecordEvery()], run_dir=tmp_path).fit(data)
    got = result["records"]["bias"]
    assert [r["step"] for r in got] == [r["step"] for r in expected] == [3, 6, 9, 12, 15, 18]
    assert all(torch.equal(a["bias"], b["bias"]) for a, b in zip(got, expected))
    assert "records" not in json.loads((tmp_path / "config.json").read_text())  # tensors stay out of the JSON


def test_a_checkpoint_older_than_a_new_config_field_resumes_at_its_default(tmp_path):
    data = SeparableData()
    with pytest.raises(KeyboardInterrupt):
        Trainer(nn.Linear(DIM, 2), config(), callbacks=[InterruptAt(7)], run_dir=tmp_path).fit(data)
    state = safe_torch_load(tmp_path / "checkpoint.pt")
    del state["config"]["adam_eps"]  # as written before TrainConfig had the field
    torch.save(state, tmp_path / "checkpoint.pt")
    assert Trainer(nn.Linear(DIM, 2), config(), run_dir=tmp_path).fit(data)["steps"] == 20
    with pytest.raises(ValueError, match="adam_eps"):
        Trainer(nn.Linear(DIM, 2), config(steps=30, adam_eps=1e-3), run_dir=tmp_path).fit(data)


def test_corrupt_checkpoint_error_names_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(RuntimeError, match=str(path)):
        Trainer(nn.Linear(DIM, 2), config(), run_dir=tmp_path).fit(SeparableData())


class NanAfter(nn.Module):
    """A linear classifier whose training forward passes turn to NaN from call ``bad_call`` on."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.linear, self.calls, self.bad_call = nn.Linear(DIM, 2), 0, bad_call

    def forward(self, x):
        self.calls += self.training
        logits = self.linear(x)
        return logits * float("nan") if self.calls >= self.bad_call else logits


def test_nan_loss_raises_and_keeps_the_last_checkpoint(tmp_path):
    cfg = config(steps=20, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match=r"step 5 of 20.*loss is nan.*lower lr.*grad_clip.*step 4\)"):
        Trainer(NanAfter(bad_call=5), cfg, run_dir=tmp_path).fit(SeparableData())
    checkpoint = safe_torch_load(tmp_path / "checkpoint.pt")
    assert checkpoint["step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())
    assert not (tmp_path / "config.json").exists()


class InfiniteGradient(nn.Module):
    """Finite outputs, but d sqrt(z)/dz at z = 0 is infinite for ``self.bad``."""

    def __init__(self):
        super().__init__()
        self.linear, self.bad = nn.Linear(DIM, 2), nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.linear(x) + torch.sqrt(self.bad - self.bad.detach())


def test_non_finite_gradient_raises_naming_the_parameter():
    with pytest.raises(TrainingDiverged, match=r"step 1 of .*gradients of \['bad'\]"):
        Trainer(InfiniteGradient(), config()).fit(SeparableData())


class STClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.st = SpatialTransformer(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh()), "affine")
        self.classifier = nn.Linear(16, 2)

    def localisation_parameters(self):
        return localisation_parameters(self)

    def forward(self, x):
        out, theta = self.st(x.reshape(-1, 1, 4, 4))
        return self.classifier(out.flatten(1)), theta


class Images:
    def batch(self, step):
        x = torch.rand(8, 16, generator=torch.Generator().manual_seed(step))
        return x, (x.mean(1) > 0.5).long()


def test_loc_lr_mult_gives_the_spatial_transformer_its_own_rate():
    model = STClassifier()
    trainer = Trainer(model, config(steps=3, lr=0.01, loc_lr_mult=0.1, schedule="constant"))
    trainer.fit(Images())
    main, loc = trainer.optimizer.param_groups
    assert {id(p) for p in loc["params"]} == {id(p) for p in model.st.parameters()}
    assert {id(p) for p in main["params"]} == {id(p) for p in model.classifier.parameters()}
    assert main["lr"] == pytest.approx(0.01) and loc["lr"] == pytest.approx(0.001)
    assert count_parameters(model) == (16 * 8 + 8) + (8 * 6 + 6) + (16 * 2 + 2)


def test_loc_lr_mult_needs_the_model_to_declare_its_localisation_parameters():
    class Undeclared(STClassifier):
        localisation_parameters = None

    with pytest.raises(ValueError, match="localisation_parameters"):
        Trainer(Undeclared(), config(steps=1, loc_lr_mult=0.1)).fit(Images())
    # without a multiplier the declaration is not needed: one group
    trainer = Trainer(Undeclared(), config(steps=1))
    trainer.fit(Images())
    assert len(trainer.optimizer.param_groups) == 1


class PoisonLocalisationNet(Callback):
    def on_step_end(self, trainer, step, metrics):
        if step == 2:
            with torch.no_grad():
                trainer.model.st.loc_net[1].weight.fill_(float("nan"))


def test_a_diverged_localisation_net_is_reported_as_divergence():
    # The spatial transformer raises on a NaN theta before any loss exists; the trainer says why.
    with pytest.raises(TrainingDiverged, match=r"step 3 of .*st\.loc_net\.1\.weight.*theta contains NaN"):
        Trainer(STClassifier(), config(), callbacks=[PoisonLocalisationNet()]).fit(Images())


def test_step_schedule_divides_the_rate_by_ten_at_each_decay_step():
    cfg = config(steps=8, lr=0.1, log_every=1, schedule="step", lr_decay_steps=(3, 6))
    history = Trainer(nn.Linear(DIM, 2), cfg).fit(SeparableData())["history"]
    expected = [0.1] * 3 + [0.01] * 3 + [0.001] * 2
    assert [h["lr"] for h in history] == pytest.approx(expected)


def test_warmup_then_cosine():
    cfg = TrainConfig(steps=104, warmup_steps=4)
    assert [lr_factor(cfg, s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(cfg, 54) == pytest.approx(0.5)
    assert 0 < lr_factor(cfg, 103) < 1e-3


def test_evaluate_on_a_hand_made_example():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0], [5.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1, 1])  # rows 2 and 4 are wrong: 40% error
    model = nn.Sequential(nn.Identity(), nn.Dropout(0.9))  # dropout must be off while evaluating
    metrics = evaluate(model, (logits, labels), batch_size=2)
    assert metrics["error"] == pytest.approx(40.0, abs=1e-12)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert model.training
    model.eval()
    assert evaluate(model, {"x": logits, "y": labels}) == pytest.approx(metrics)
    assert not model.training


def test_classification_loss_takes_the_logits_from_a_tuple():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss, metrics = classification_loss(lambda x: (x, "theta"), (logits, torch.tensor([1, 1])))
    assert metrics["error"] == 50.0 and metrics["loss"] == pytest.approx(loss.item())


def test_config_round_trips_through_json_and_rejects_bad_values():
    cfg = TrainConfig(steps=7, optimizer="sgd", schedule="step", lr_decay_steps=(3, 5), grad_clip=1.0, num_threads=2)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.lr_decay_steps == (3, 5)
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_decay": 0.5})
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(steps=1, optimizer="adamw")
