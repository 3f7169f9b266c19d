#!/usr/bin/env python3
"""Reference vectors for the all-MiniLM-L6-v2 sentence embedding.

This is an independent numpy implementation of the
sentence-transformers/all-MiniLM-L6-v2 embedding: the BERT forward pass
(computed in float64), mean pooling over the attention mask, then L2
normalisation. It writes tests/fixtures/minilm_reference.json, which the
Rust (candle) implementation is tested against with a tolerance of 1e-5.

Requirements: numpy, safetensors and tokenizers (no torch). Install them with

    python3 -m pip install numpy safetensors tokenizers

pip also picks up local wheels automatically when PIP_FIND_LINKS points at a
wheel directory (e.g. PIP_FIND_LINKS=/opt/wheels).

Run from the repository root:

    python3 scripts/reference-vectors.py

The model folder (config.json, tokenizer.json, model.safetensors) is read from
$SQLMCP_MODEL_DIR, or by default from
${XDG_CACHE_HOME:-$HOME/.cache}/sqlmcp/models/all-MiniLM-L6-v2.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_TOKENS = 256  # sentence-transformers max_seq_length for this model
TEXTS = [
    "cordless drill for masonry",
    "something to cut copper pipe",
    "keeps tools dry in the truck",
    "Exterior latex paint, satin finish, one gallon.",
    "",
    ("A very long sentence " * 80).rstrip(),
]
OUTPUT = Path(__file__).resolve().parent.parent / "tests/fixtures/minilm_reference.json"


def model_dir() -> Path:
    if os.environ.get("SQLMCP_MODEL_DIR"):
        return Path(os.environ["SQLMCP_MODEL_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "sqlmcp/models/all-MiniLM-L6-v2"


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """Exact (erf-based) GELU, as HF's "gelu" activation."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, folder: Path):
        self.cfg = json.loads((folder / "config.json").read_text())
        raw = load_file(str(folder / "model.safetensors"))
        # Accept both "bert.encoder..." and bare "encoder..." tensor names.
        self.w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in raw.items()}
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.no_padding()  # tokenizer.json pads to 128; we embed single strings
        self.tok.enable_truncation(max_length=MAX_TOKENS)  # tokenizer.json says 128

    def linear(self, x, name):
        # HF Linear weights are [out, in]: y = x @ W.T + b
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def norm(self, x, name):
        eps = self.cfg["layer_norm_eps"]
        return layer_norm(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"], eps)

    def tokenize(self, text):
        return self.tok.encode(text).ids

    def embed(self, text):
        ids = np.array(self.tokenize(text))
        n, w = len(ids), self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]  # token type ids all 0
        )
        x = self.norm(x, "embeddings.LayerNorm")
        heads = self.cfg["num_attention_heads"]
        dh = self.cfg["hidden_size"] // heads
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q, k, v = (
                self.linear(x, f"{p}.attention.self.{m}").reshape(n, heads, dh).transpose(1, 0, 2)
                for m in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(dh)  # [heads, n, n]
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * dh)
            x = self.norm(self.linear(ctx, f"{p}.attention.output.dense") + x,
                          f"{p}.attention.output.LayerNorm")
            h = gelu(self.linear(x, f"{p}.intermediate.dense"))
            x = self.norm(self.linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        pooled = x.mean(axis=0)  # attention mask is all ones (single, unpadded string)
        return pooled / np.linalg.norm(pooled), n


def main():
    folder = model_dir()
    model = MiniLM(folder)
    print(f"model: {folder}")

    vectors = []
    for text in TEXTS:
        emb, n = model.embed(text)
        norm = float(np.linalg.norm(emb))
        assert abs(norm - 1.0) < 1e-6, (text, norm)
        print(f"{n:4d} tokens  norm={norm:.9f}  {text[:50]!r}")
        vectors.append({"text": text, "tokens": n, "embedding": [round(float(v), 8) for v in emb]})

    by_text = {v["text"]: np.array(v["embedding"]) for v in vectors}
    cos = float(by_text[TEXTS[1]] @ by_text[TEXTS[0]])
    print(f"cosine({TEXTS[1]!r}, {TEXTS[0]!r}) = {cos:.6f}")

    # Cross-check against the sentence-transformers model card example.
    for text in ("This is an example sentence", "Each sentence is converted"):
        emb, _ = model.embed(text)
        print(f"{text!r}: {np.array2string(emb[:5], precision=8)}")

    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "generated_by": "scripts/reference-vectors.py",
        "tolerance": 1e-5,
        "vectors": vectors,
    }
    # Pretty-print the header but keep each vector (and its embedding) on one line.
    lines = ",\n".join("    " + json.dumps(v) for v in vectors)
    head = json.dumps({k: doc[k] for k in ("model", "generated_by", "tolerance")}, indent=2)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(head[:-2] + ',\n  "vectors": [\n' + lines + "\n  ]\n}\n")
    json.loads(OUTPUT.read_text())  # must round-trip as valid JSON
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
