"""The engine on a CUDA GPU: device choice, the mask, learning, checkpoints and the trainer process.

Skipped where torch sees no CUDA device (CI and most laptops); run on a GPU machine with
`pytest tests/test_engine_cuda.py`.
"""

from __future__ import annotations

import queue
import time

import pytest
import torch

from tui_gpt.engine.checkpoint import load_model, load_trainer
from tui_gpt.engine.dataset import ids
from tui_gpt.engine.model import GPT, GPTConfig
from tui_gpt.engine.session import RunSpec, open_run
from tui_gpt.engine.trainer import pick_device, resolve_dtype

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA_TRAIN = {"batch_size": 8, "lr": 1e-2, "warmup_steps": 5, "decay_steps": 150, "eval_interval": 0, "seed": 0}


def cuda_spec(**train) -> RunSpec:
    return RunSpec(n_layer=2, n_head=2, n_embd=32, block_size=32, train={**CUDA_TRAIN, "device": "auto", **train})


def test_auto_picks_cuda_and_bf16_where_supported():
    assert pick_device("auto").type == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("want_attn", [False, True], ids=["sdpa", "attention-path"])
@pytest.mark.parametrize("causal", [True, False])
def test_the_mask_on_cuda(causal, want_attn, dtype):
    torch.manual_seed(0)
    V, T, t = 24, 16, 6
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=32, causal=causal)).cuda().eval()
    x = torch.randint(V, (2, T), device="cuda")
    x2 = x.clone()
    x2[:, t + 1 :] = (x[:, t + 1 :] + 1) % V
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        a = model(x, want_attn=want_attn)[0].float()
        b = model(x2, want_attn=want_attn)[0].float()
    past = (a[:, : t + 1] - b[:, : t + 1]).abs().max().item()
    future = (a[:, t + 1 :] - b[:, t + 1 :]).abs().max().item()
    assert future > 1e-2  # the change is there to be seen
    if causal:
        assert past < 1e-5, f"positions <= {t} saw a change after them"
    else:
        assert past > 1e-2


def test_a_model_learns_on_cuda_in_bf16():
    run = open_run(cuda_spec())
    tr = run.trainer
    assert tr.device.type == "cuda" and next(tr.model.parameters()).is_cuda
    before = tr.split_loss("val")
    events = list(tr.run(steps=150))
    assert all(ev.loss == ev.loss for ev in events)  # no NaN under autocast
    assert tr.split_loss("val") < before - 0.8


def test_a_cuda_checkpoint_loads_on_the_cpu_and_resumes_on_cuda(tmp_path):
    spec = cuda_spec(dtype="float32")
    full = open_run(spec)
    full_losses = [ev.loss for ev in full.trainer.run(steps=40)]

    first = open_run(spec)
    list(first.trainer.run(steps=20))
    first.save(tmp_path / "ck")

    cpu_model, _, _ = load_model(tmp_path / "ck", device="cpu")
    x = ids(first.data.val, 0, 32)[None]  # the stream is a uint16 memory map: take int64 ids
    with torch.no_grad():
        on_gpu = first.trainer.model.eval()(x.cuda())[0].cpu()
        on_cpu = cpu_model(x)[0]
    torch.testing.assert_close(on_cpu, on_gpu, rtol=1e-4, atol=1e-4)

    resumed = load_trainer(tmp_path / "ck", first.data, device="auto")
    assert resumed.device.type == "cuda" and resumed.step == 20
    rest = [ev.loss for ev in resumed.run(steps=20)]
    # CUDA's embedding backward adds with atomics, so the runs agree to rounding, not bit for bit.
    assert rest == pytest.approx(full_losses[20:], rel=1e-3)


def test_the_trainer_process_trains_on_cuda_and_sends_cpu_weights():
    from tui_gpt.link.client import TrainerClient
    from tui_gpt.link.protocol import Failed, Ready, Weights
    from tui_gpt.probes.replica import Replica

    got: queue.Queue = queue.Queue()
    client = TrainerClient(got.put)
    client.start(cuda_spec(eval_interval=0))
    try:
        ready = weights = None
        deadline = time.monotonic() + 120
        while weights is None and time.monotonic() < deadline:
            ev = got.get(timeout=deadline - time.monotonic())
            assert not isinstance(ev, Failed), ev
            if isinstance(ev, Ready):
                ready = ev
            elif isinstance(ev, Weights):
                weights = ev
        assert ready is not None and weights is not None
        assert ready.device.startswith("cuda")
        replica = Replica(ready.tokenizer_json, ready.model_config)  # the app's CPU copy
        replica.swap(replica.stage(weights.blob), weights.step)
        assert not next(replica.model.parameters()).is_cuda
        assert replica.analyze("The ", k=5, temperature=1.0).examples
    finally:
        client.stop(save=None)
