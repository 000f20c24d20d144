"""Which of a round's images are drawn together: the chunks a round streams in. Needs no torch (the app's tests use it)."""

from __future__ import annotations

FIRST_CHUNK_SHARE = 4  # the first chunk is a quarter of the others, so a round's first images show after a quarter of a chunk


def chunk_ranges(n: int, chunk: int, short_first: bool = False) -> list[range]:
    """The batch positions sampled together, in order: ``chunk`` at a time, after a short first chunk if asked.

    A round's sampling, replay and rebuild all use the same ranges, so a round replayed from
    its noise goes through the UNet in the same batches and gives the same numbers bit for bit.
    """
    first = min(n, max(1, chunk // FIRST_CHUNK_SHARE) if short_first else chunk)
    return [range(0, first)] + [range(s, min(s + chunk, n)) for s in range(first, n, chunk)]
