"""How much of a hub model has been downloaded so far, and of how much, told while diffusers downloads it.

diffusers fetches a hub id's files inside ``from_pretrained`` and tells its caller nothing until it returns, which
on a first start is a minute or more (SD1.5: 2 to 4 GB; SDXL: 7 to 14). The files land in the Hugging Face cache,
in huggingface_hub's layout (``models--owner--name/blobs/``, each file growing under a ``.incomplete`` name until
it is whole, over HTTP or Xet alike), so a thread beside the download measures that folder. The total is read
beforehand from the repository's file list (``expected_bytes``): the files of the pipeline's parts that diffusers
picks, in the layout SD repositories have; where the hub does not say, the download has no total.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5  # seconds between two measures: a live count, for a stat of a few dozen files each time
UNKNOWN_TOTAL = 0
_SMALL_FILES = (".json", ".txt")  # configs, tokenizers, schedulers: a part's files besides its weights


def repo_cache_folder(repo_id: str) -> Path:
    """Where huggingface_hub keeps the model ``repo_id`` (HF_HUB_CACHE, or HF_HOME's hub folder)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")


def blob_bytes(folder: Path) -> int:
    """Bytes of every file in a repository's cache folder, those still downloading included."""
    try:
        blobs = list((folder / "blobs").iterdir())
    except OSError:
        return 0  # nothing downloaded yet
    total = 0
    for blob in blobs:
        try:
            stat = blob.stat()
        except OSError:
            continue  # renamed from .incomplete between the listing and the stat: counted at the next measure
        # A file made at its full size before its bytes arrive (a sparse file) counts what is written in it.
        total += min(stat.st_size, stat.st_blocks * 512)
    return total


def expected_bytes(repo_id: str, parts: Collection[str], variant: str | None) -> int:
    """The bytes a pipeline's download of ``repo_id`` still needs: each of the pipeline's ``parts`` (folders of
    the repository) with its small files and its weights, in ``variant`` where the part has it, else the default
    files (safetensors first); files already in the cache are not counted. UNKNOWN_TOTAL where the hub does not
    tell the files' sizes, or is out of reach."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    try:
        siblings = HfApi().model_info(repo_id, files_metadata=True, timeout=15).siblings or []
    except Exception as exc:  # the loading that follows says what is wrong, if anything is
        log.info("the size of %s is not known (%s)", repo_id, exc)
        return UNKNOWN_TOTAL
    sizes = {sibling.rfilename: sibling.size for sibling in siblings}
    if any(size is None for size in sizes.values()):
        return UNKNOWN_TOTAL
    wanted = [name for part in parts for name in _part_files(sorted(n for n in sizes if n.startswith(f"{part}/")), variant)]
    wanted += [name for name in ("model_index.json",) if name in sizes]
    return sum(sizes[name] for name in wanted if not isinstance(try_to_load_from_cache(repo_id, name), str))


def _part_files(names: list[str], variant: str | None) -> list[str]:
    """A part's small files and the weights diffusers loads of it: ``variant``'s where there are any, else the
    default ones (``model.safetensors``, ``diffusion_pytorch_model-00001-of-00002.safetensors``: one dot)."""
    small = [name for name in names if name.endswith(_SMALL_FILES)]
    for suffix in (".safetensors", ".bin"):
        weights = [name for name in names if name.endswith(suffix)]
        chosen = [name for name in weights if _infix(name) == variant] if variant else []
        chosen = chosen or [name for name in weights if _infix(name) is None]
        if chosen:
            return small + chosen
    return small


def _infix(name: str) -> str | None:
    """A weights file's variant (``model.fp16.safetensors``, ``model.fp16-00001-of-00002.safetensors``), or None."""
    parts = name.rsplit("/", 1)[-1].split(".")
    return parts[1].split("-", 1)[0] if len(parts) > 2 else None


@contextmanager
def watch_download(repo_id: str, on_bytes: Callable[[int, int], None], total: int = UNKNOWN_TOTAL,
                   interval: float = WATCH_INTERVAL) -> Iterator[None]:
    """While the block runs, call ``on_bytes(done, total)`` with the bytes downloaded into ``repo_id``'s cache
    folder since it began, each time they have grown, and once more at its end with all of them if they grew since;
    never when nothing was downloaded (a cached model). ``total`` is passed on as it is (UNKNOWN_TOTAL: not known)."""
    folder = repo_cache_folder(repo_id)
    before = blob_bytes(folder)
    stop = threading.Event()

    def watch() -> None:
        told = 0
        while True:
            stopping = stop.wait(interval)  # the last measure is taken after the block has ended
            done = blob_bytes(folder) - before
            if done > told:
                told = done
                on_bytes(done, total)
            if stopping:
                return

    thread = threading.Thread(target=watch, name="download-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def ran_out_of_space(exc: BaseException) -> bool:
    """Whether a failed load stopped on a full disk, said anywhere in the exception's chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def cache_and_free_space() -> str:
    """The Hugging Face cache and the space free on its disk (made or not yet): "/root/.cache/huggingface/hub
    (12.3 GB free there)"."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    existing = next(path for path in (cache, *cache.parents) if path.exists())
    free = shutil.disk_usage(existing).free
    shown = f"{free / 10**9:.1f} GB" if free >= 10**8 else f"{free / 10**6:.0f} MB"
    return f"{cache} ({shown} free there)"


def no_space_message(repo_id: str) -> str:
    """One line for a download that filled the disk: where the cache is, what is free there, and what to do."""
    return (f"no space left on device to download {repo_id} into the Hugging Face cache {cache_and_free_space()}: "
            "free some space, or set HF_HOME to a folder on a larger disk")

