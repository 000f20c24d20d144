"""A CLIP tokenizer whose BPE merges spell every caption word as one token, built offline.

The merges are learned by running byte-pair encoding on the word list itself
until each word is a single symbol; replaying those merges in rank order (what
CLIP's BPE does) then rebuilds each listed word whole. Any other text still
tokenizes, into byte-level pieces.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from hero_engine.models.clip_vocab import bytes_to_unicode

SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>"]


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges, in rank order, that turn each word into one symbol (ties broken alphabetically)."""
    spelled = [tuple(w[:-1]) + (w[-1] + "</w>",) for w in sorted(set(words))]
    merges: list[tuple[str, str]] = []
    while any(len(s) > 1 for s in spelled):
        pairs = Counter(pair for s in spelled for pair in zip(s, s[1:]))
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        spelled = [_merge(s, best) for s in spelled]
    return merges


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def write_tokenizer_files(words: list[str], folder: Path) -> tuple[Path, Path]:
    """vocab.json and merges.txt for the word list (byte-level symbols first, so any text encodes)."""
    folder.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(words)
    byte_chars = bytes_to_unicode()
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += [a + b for a, b in merges if a + b not in tokens] + SPECIAL_TOKENS
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab_path, merges_path


def build_word_tokenizer(words: list[str], folder: Path):
    """A CLIPTokenizer (max length 77) that keeps each of ``words`` whole; its files are written to ``folder``."""
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_tokenizer_files(words, folder)
    return CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=77, pad_token="<|endoftext|>")
