"""Weight snapshots through shared memory: the app reads exactly the trainer's weights, never half-written ones."""

from __future__ import annotations

import polling
import pytest
import safetensors.torch
import torch

from tui_gpt.engine.model import GPT, GPTConfig
from tui_gpt.link.client import TrainerClient
from tui_gpt.link.protocol import Losses, Pause, Ready, Save, Saved, SharedBuffer, Status, Step, TookWeights, Weights
from tui_gpt.link.snapshots import SharedWeights, blob, state
from tui_gpt.settings import RunSpec

SPEC = RunSpec(
    n_layer=1, n_head=2, n_embd=32, block_size=16, train={"eval_interval": 0, "batch_size": 4, "dtype": "float32"}
)


def wait(what: str, check, timeout: float = 60.0):
    return polling.wait(what, check, timeout, every=0.01)


def answered(client: TrainerClient, events: list[object]) -> None:
    """Wait until the trainer has handled every command sent so far: it answers a Pause (paused already)
    with a Status, after the events of the commands before it."""
    statuses = sum(isinstance(e, Status) for e in events)
    client.send(Pause())
    wait("the trainer's answer", lambda: sum(isinstance(e, Status) for e in events) > statuses, 30)


def test_a_shared_snapshot_holds_the_model_exactly():
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16))
    shared = SharedWeights.create(model)
    if shared is None:
        pytest.skip("no room in shared memory here")
    assert shared.buffer.is_shared()
    shared.write(model)
    views = shared.views()
    assert views.keys() == state(model).keys() and "lm_head.weight" not in views
    for name, t in state(model).items():
        assert torch.equal(views[name], t), name
    copy = GPT(model.config)
    copy.load_state_dict(views, strict=False)
    x = torch.randint(50, (1, 8))
    assert torch.equal(copy.eval()(x)[0], model.eval()(x)[0])
    assert safetensors.torch.load(blob(model)).keys() == views.keys()


def test_the_trainer_writes_the_buffer_only_after_the_app_took_the_last_snapshot(tmp_path):
    events: list[object] = []
    client = TrainerClient(events.append, threads=1)
    client.start(SPEC)
    client.send(Pause())
    try:
        wait("the trainer to be ready", lambda: any(isinstance(e, Ready) for e in events))
        buffers = wait("the shared buffer", lambda: [e for e in events if isinstance(e, SharedBuffer)], 10)
        first = wait("the first snapshot", lambda: [e for e in events if isinstance(e, Weights)], 10)[0]
        assert first.blob is None, "snapshots go through shared memory where there is room"
        views = buffers[0].shared.views()
        before = {k: v.clone() for k, v in views.items()}
        client.send(Step(5))  # each step of a paused run sends a snapshot; none may land while we hold the buffer
        wait("5 steps", lambda: any(isinstance(e, Losses) and e.events[-1]["step"] == 5 for e in events), 30)
        answered(client, events)  # the fifth step's snapshot is due by now
        assert all(torch.equal(views[k], before[k]) for k in views), "written before the app took it"
        assert sum(isinstance(e, Weights) for e in events) == 1
        client.send(TookWeights(buffers[0].buffer + 1))  # another run's buffer frees nothing
        answered(client, events)
        assert sum(isinstance(e, Weights) for e in events) == 1
        client.send(TookWeights(buffers[0].buffer))  # the snapshot that was due comes at once
        wait("the due snapshot", lambda: sum(isinstance(e, Weights) for e in events) == 2, 10)
        step = [e for e in events if isinstance(e, Weights)][-1].step
        client.send(Save(str(tmp_path / "ck")))
        saved = wait("the save", lambda: [e for e in events if isinstance(e, Saved)], 30)[0]
        assert saved.step == step == 5
        on_disk = safetensors.torch.load_file(str(tmp_path / "ck" / "model.safetensors"))
        tied = {"transformer.wte.weight": "lm_head.weight"}  # save_model keeps one name of a tied pair
        for name, t in views.items():
            assert torch.equal(t, on_disk[name if name in on_disk else tied[name]]), name
    finally:
        client.stop(save=None)
