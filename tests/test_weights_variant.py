"""Which weight files of a hub model a session downloads and loads: the fp16 variant where the frozen model runs in half
precision, kept with the session so that it resumes from the base weights it started with.

A hub on localhost (fake_hub) serves the tiny pipeline with an fp16 variant whose weights differ from the default
files, so the images a session draws show which files it loaded. huggingface_hub reads the hub's address when it is
imported: the engine runs in child processes.
"""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from fake_hub import TINY_REPO, serving_the_tiny_model

from hero_engine.storage.store import SessionStore

TESTS = Path(__file__).parent
DEFAULT_UNET = "unet/diffusion_pytorch_model.safetensors"
HALF_UNET = "unet/diffusion_pytorch_model.fp16.safetensors"


def run_child(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=TESTS)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().rpartition("\n")[2]  # the last line printed


def weights(hub) -> list[str]:
    return sorted(name for name in hub.downloaded if name.endswith(".safetensors"))


def recorded_variant(folder: Path) -> str | None:
    return tomllib.loads((folder / "session.toml").read_text())["session"].get("weights_variant")


ROUNDS = """
import json, sys
sys.path.insert(0, '.')
from engine_support import run_rounds
from hero_engine.config import HeroConfig
from hero_engine.session.hero_session import HeroSession
config = HeroConfig(prompt='a red hand', model=sys.argv[2], batch_size=6, steps=6, train_timesteps=3, encoder_epochs=8,
                    encoder_triplets=8, sample_batch=6)
folder, dtype, before, after = sys.argv[1], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
with HeroSession.create(folder, config, 'cpu', dtype) as session:
    run_rounds(session, before)
if after:
    with HeroSession.open(folder, 'cpu', dtype) as session:
        run_rounds(session, after)
with HeroSession.open(folder, 'cpu', dtype) as session:
    print(json.dumps([image.path.read_bytes().hex() for image in session.propose().images]))
"""


def test_a_half_precision_session_downloads_the_fp16_files_and_resumes_from_them(tmp_path, monkeypatch):
    """Guards the variant's choice and its keeping: a bfloat16 session of a hub model with an fp16 variant downloads
    the variant's weights and no default ones, records "fp16" in session.toml, and, reopened in new processes (each
    reading the record), draws the same images as an uninterrupted session; the export's Python snippet loads the
    same files, from the cache; a float32 session downloads the default files. A reopened session that chose again, or loaded the default files, would draw other images."""
    with serving_the_tiny_model(tmp_path, monkeypatch, half_variant=True) as hub:
        straight = json.loads(run_child(ROUNDS, str(tmp_path / "a"), TINY_REPO, "bfloat16", "2", "0"))
        assert weights(hub) == sorted(["text_encoder/model.fp16.safetensors", HALF_UNET,
                                       "vae/diffusion_pytorch_model.fp16.safetensors"]), hub.downloaded
        assert recorded_variant(tmp_path / "a") == "fp16"
        resumed = json.loads(run_child(ROUNDS, str(tmp_path / "b"), TINY_REPO, "bfloat16", "1", "1"))
        assert resumed == straight
        assert weights(hub) == sorted(["text_encoder/model.fp16.safetensors", HALF_UNET,
                                       "vae/diffusion_pytorch_model.fp16.safetensors"]), hub.downloaded

        hub.downloaded.clear()
        export = subprocess.run([sys.executable, "-m", "hero_tui", "export", str(tmp_path / "a"), "--out",
                                 str(tmp_path / "x.safetensors")], capture_output=True, text=True, timeout=300)
        assert export.returncode == 0, export.stderr
        snippet = export.stdout.split("Python, ready to run:\n", 1)[1]
        assert f"from_pretrained('{TINY_REPO}', variant='fp16')" in snippet, snippet
        drawn = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert drawn.returncode == 0 and (tmp_path / "hero_sample.png").is_file(), drawn.stderr[-3000:]
        assert not weights(hub), hub.downloaded  # the snippet reads the files the session downloaded

        in_float32 = json.loads(run_child(ROUNDS, str(tmp_path / "c"), TINY_REPO, "float32", "2", "0"))
        assert DEFAULT_UNET in weights(hub) and HALF_UNET not in weights(hub), hub.downloaded
        assert recorded_variant(tmp_path / "c") == "default"
        assert in_float32 != straight  # the default files' weights: the images tell the two loads apart


CHOOSE = """
import sys
from hero_engine.models import weights_variant
print([weights_variant.choose(model, half) for model, half in [(sys.argv[1], True), (sys.argv[1], False),
       ('tiny', True), ('demo', True), (sys.argv[2], True), ('someone/not-there', True)]])
"""


def test_the_variant_is_fp16_only_for_a_half_precision_hub_model_not_already_cached_in_full(tmp_path, monkeypatch):
    """Guards ``weights_variant.choose``: fp16 for a half-precision run of a hub model that has the variant; the default
    files for float32, built-in models, a local folder, a repository without the variant; and the default files where
    they are cached already (no download at all), even for a half-precision run."""
    with serving_the_tiny_model(tmp_path, monkeypatch, half_variant=True) as hub:
        folder = tmp_path / "hub-repo"
        assert run_child(CHOOSE, TINY_REPO, str(folder)) == str(["fp16", "default", "default", "default", "default", "default"])
        assert not weights(hub)  # choosing downloads nothing
        run_child("import sys; from huggingface_hub import hf_hub_download; hf_hub_download(sys.argv[1], sys.argv[2])",
                  TINY_REPO, DEFAULT_UNET)
        assert run_child(CHOOSE, TINY_REPO, str(folder)).startswith("['default', 'default'")


REPLIES = {"propose": "batch_ready", "choose_best": "best_chosen", "label": "labeled", "submit": "submitted",
           "update": "batch_ready"}  # the event that ends each command's answer


def converse(folder: Path, dtype: str, *commands: dict) -> list[dict]:
    """An engine process given ``commands`` one at a time, each after the last one's answer; the answers' last events."""
    from hero_engine import protocol

    engine = subprocess.Popen([sys.executable, "-m", "hero_engine.worker", "--session", str(folder), "--device", "cpu",
                               "--dtype", dtype], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    answers = []
    try:
        for number, command in enumerate(commands, 1):
            engine.stdin.write(protocol.encode({**command, "id": number}) + "\n")
            engine.stdin.flush()
            event = {"event": ""}
            while event["event"] not in (REPLIES[command["cmd"]], "error"):
                event = protocol.decode(engine.stdout.readline() or '{"event": "error", "message": "the engine exited"}')
            assert event["event"] == REPLIES[command["cmd"]], event
            answers.append(event)
        engine.stdin.write(protocol.encode({"cmd": "shutdown"}) + "\n")
        engine.stdin.close()
        assert engine.wait(timeout=60) == 0
    finally:
        engine.kill()
    return answers


def test_a_session_started_in_the_app_chooses_its_variant_at_the_first_load(tmp_path, monkeypatch, tiny_config):
    """Guards the app's path, where `hero-tui start` writes the session before the engine loads the model: the engine's
    first load chooses the fp16 variant for a bfloat16 run and records it; a second engine, here in float32, learns
    the round from the same files, loaded from the cache with nothing downloaded and no file sizes asked of the hub
    (one that chose again would take the default files)."""
    from dataclasses import replace

    folder = tmp_path / "session"
    with serving_the_tiny_model(tmp_path, monkeypatch, half_variant=True) as hub:
        SessionStore.create(folder, replace(tiny_config, model=TINY_REPO)).close()
        assert recorded_variant(folder) is None
        batch = converse(folder, "bfloat16", {"cmd": "propose"})[0]["batch"]
        assert recorded_variant(folder) == "fp16"
        assert HALF_UNET in weights(hub) and DEFAULT_UNET not in weights(hub), hub.downloaded
        assert [request for request in hub.asked if "blobs=" in request], hub.asked  # the first load asked for the sizes
        hub.downloaded.clear()
        hub.asked.clear()
        best, good = (image["id"] for image in batch["images"][:2])
        answers = converse(folder, "float32", {"cmd": "choose_best", "image_id": best},
                           {"cmd": "label", "image_id": good, "good": True}, {"cmd": "submit"}, {"cmd": "update"})
        assert answers[-1]["batch"]["round"] == 1  # the model was loaded: it learned round 0 and drew round 1
        assert recorded_variant(folder) == "fp16"
        assert not weights(hub), hub.downloaded
        assert not [request for request in hub.asked if "blobs=" in request], hub.asked  # nor the files' sizes


def test_the_download_total_counts_the_files_diffusers_picks_of_each_part():
    """Guards which files a download's total counts in a part's folder (the downloads above check the total against
    what diffusers fetched for single files): a variant's weights where the part has them, else the default ones;
    sharded and older layouts; safetensors before pickles; small files always; other variants and formats never."""
    from hero_engine.models.download_watch import _part_files

    unet = ["unet/config.json", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.bin",
            "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.non_ema.safetensors", "unet/diffusion_flax_model.msgpack"]
    assert _part_files(unet, None) == ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    assert _part_files(unet, "fp16") == ["unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"]
    sharded = ["unet/config.json", "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
               "unet/diffusion_pytorch_model-00002-of-00002.safetensors", "unet/diffusion_pytorch_model.safetensors.index.json",
               "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
               "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors"]
    assert _part_files(sharded, None) == [sharded[0], sharded[3], sharded[1], sharded[2]]
    assert _part_files(sharded, "fp16") == [sharded[0], sharded[3], sharded[4], sharded[5]]
    older = ["text_encoder/config.json", "text_encoder/pytorch_model.bin", "text_encoder/pytorch_model.fp16.bin"]
    assert _part_files(older, "fp16") == ["text_encoder/config.json", "text_encoder/pytorch_model.fp16.bin"]
    no_variant = ["vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
    assert _part_files(no_variant, "fp16") == no_variant
    tokenizer = ["tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/vocab.json"]
    assert _part_files(tokenizer, "fp16") == tokenizer
