"""Small tokenizers written locally, for random-weight checkpoints built from configs.

No hub access is possible here, so the tests (tiny models) and ``bench/bench_models.py``
(base-size architectures) build text-prompted detectors with these vocabularies instead of the
real ones. They are enough for the detectors' full pre-processing, forward and post-processing;
they say nothing about quality.
"""

from __future__ import annotations

import json
from pathlib import Path

BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "object", "cat", "dog", "cup", "person", "a", "red"]


def write_bert_tokenizer(d: Path) -> int:
    """A word-level BERT tokenizer over :data:`BERT_WORDS` saved in ``d``; returns the vocabulary size."""
    from transformers import BertTokenizer

    (d / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    return len(BERT_WORDS)


def write_clip_tokenizer(d: Path) -> int:
    """A character-level CLIP BPE vocabulary (no merges) saved in ``d``; returns the vocabulary size."""
    from transformers import CLIPTokenizer

    # OWL treats a query whose first token id is 0 as padding: keep id 0 for a plain character.
    vocab = {"!": 0, "<|endoftext|>": 1, "<|startoftext|>": 2}
    for c in "abcdefghijklmnopqrstuvwxyz.":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt")).save_pretrained(d)
    return len(vocab)
