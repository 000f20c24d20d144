"""Precision and GPU memory: which dtype a GPU gets, how the CUDA allocator is set up, and what an out-of-memory frees."""

import weakref

import pytest
import torch

from hero_engine.errors import OutOfMemory
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.models import pipelines
from hero_engine.session.hero_session import HeroSession
from hero_engine.session.memory_guard import guard


@pytest.mark.parametrize("capability, expected", [((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16")])
def test_bfloat16_only_where_the_gpu_computes_in_it_natively(monkeypatch, capability, expected):
    """Compute capability 8 and up gets bfloat16; a Turing card (7.5) gets float16 with loss scaling, even though
    torch reports bfloat16 as supported there (emulated, several times slower). Fails if the default asks
    ``torch.cuda.is_bf16_supported`` again, or reads the capability the wrong way round."""
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert pipelines.default_dtype(torch.device("cuda:1")) == expected
    assert asked == [torch.device("cuda:1")]  # the session's own device, not the current one
    assert pipelines.default_dtype(torch.device("cpu")) == "float32"


@pytest.fixture
def no_allocator_settings(monkeypatch):
    for name in pipelines.ALLOCATOR_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_a_cuda_runtime_sets_expandable_segments_unless_the_person_set_the_allocator(monkeypatch, no_allocator_settings):
    """Resolving a CUDA runtime (what every session does before it touches the GPU) asks the CUDA caching
    allocator for expandable segments, so reserved memory stays near what is allocated; a CPU runtime leaves
    the environment alone, and so does a person's own setting under either name."""
    import os

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    pipelines.Runtime.resolve("cpu")
    assert not any(name in os.environ for name in pipelines.ALLOCATOR_SETTINGS)
    assert pipelines.Runtime.resolve("cuda").dtype == torch.bfloat16
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"

    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    pipelines.prefer_expandable_segments()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    monkeypatch.setenv("PYTORCH_ALLOC_CONF", "expandable_segments:False")
    pipelines.prefer_expandable_segments()
    assert "PYTORCH_CUDA_ALLOC_CONF" not in os.environ


def test_out_of_memory_cleanup_runs_after_the_failed_stage_let_go_of_its_tensors():
    """When the guard's cleanup (reload the policy, empty the CUDA cache) runs, a tensor that only the failed
    stage's frame held is already freed: the cache can hand its memory back. Fails if the cleanup runs inside
    the ``except`` block, where the exception's traceback still holds that frame."""
    held = []
    seen_alive = []

    def stage():
        activations = torch.ones(1024)
        held.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(OutOfMemory, match="out of memory during policy; the session is intact") as info:
        guard("policy", stage, lambda: seen_alive.append(held[0]() is not None))
    assert seen_alive == [False]
    assert info.value.__context__ is None and info.value.__cause__ is None  # one line, no torch traceback

    def host_out_of_memory():
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    with pytest.raises(OutOfMemory, match="can't allocate memory"):
        guard("sampling", host_out_of_memory, lambda: None)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        guard("sampling", lambda: (_ for _ in ()).throw(RuntimeError("shape mismatch")), lambda: pytest.fail("not an out-of-memory"))


def test_the_learned_rounds_trajectory_is_let_go_before_the_next_round_is_drawn(tmp_path, tiny_config):
    """Guards memory between rounds: once a round is learned, its trajectory (every step's latents) is no longer
    held while the next round is drawn, so the two never sit in memory together."""
    held = []
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        label_batch(session, get_evaluator("redness"))
        session.submit()
        session.update(on_images=lambda round_, images, size: held.append(session._sampler.trajectory))
    assert held and all(kept is None for kept in held)
