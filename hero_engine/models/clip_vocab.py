"""CLIP's byte-level BPE vocabulary, shared by the offline tokenizers: the tiny pipeline's, the single-file configs', the demo's."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def build_offline_tokenizer(pad_token: str = "<|endoftext|>"):
    """A byte-level CLIP BPE tokenizer from a generated vocabulary (no merges, no download); SDXL's second pads with '!'."""
    from transformers import CLIPTokenizer

    byte_chars = bytes_to_unicode()
    vocab_tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory(prefix="hero-tokenizer-") as folder:
        vocab = Path(folder, "vocab.json")
        merges = Path(folder, "merges.txt")
        vocab.write_text(json.dumps({tok: i for i, tok in enumerate(vocab_tokens)}))
        merges.write_text("#version: 0.2\n")
        return CLIPTokenizer(
            str(vocab),
            str(merges),
            model_max_length=77,
            pad_token=pad_token,
        )


def bytes_to_unicode() -> list[str]:
    # The printable stand-in character of every byte, as GPT-2/CLIP byte-level BPE defines it.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]
