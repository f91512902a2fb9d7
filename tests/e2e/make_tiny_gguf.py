"""Write a tiny random-weight llama-architecture GGUF model that llama.cpp can serve.

Nothing is downloaded: the weights come from a seeded numpy generator and the
tokenizer is built here. Needs ``numpy`` and ``gguf`` (PyPI). Usage::

    python tests/e2e/make_tiny_gguf.py -o tiny.gguf --seed 1
    python tests/e2e/make_tiny_gguf.py -o med.gguf --n-embd 256 --n-layer 4 --n-ff 768 --f16

The defaults give a ~0.8 MB file (2 layers, n_embd 64, 866-token vocabulary).

Design:

* Tokenizer: SentencePiece-style (``tokenizer.ggml.model = "llama"``). Ids 0-4 are
  ``<unk> <s> </s> <|im_start|> <|im_end|>``, then 256 byte-fallback tokens
  ``<0x00>..<0xFF>`` (so any UTF-8 text tokenizes), then "▁", printable ASCII and a
  few hundred English words together with all their prefixes ("▁t", "▁th", "▁the"),
  so SPM's bigram merging can reach each word.
* Chat template: ChatML, stored in ``tokenizer.chat_template``.
* The output head is shaped so the text is readable word salad: rows for unk,
  control and byte tokens are zero and whole-word rows are scaled up. The model
  therefore practically never emits EOS: generations run to ``max_tokens``
  (``finish_reason: "length"``); send a ``stop`` string such as ``" the"`` to get
  ``"stop"``.
* Deterministic: the same arguments give a byte-identical file.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPACE = "\u2581"  # SentencePiece word-boundary marker "▁"

_WORDS_TEXT = """
the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot word but what some we can out other were all there
when up use your how said an each she which do their time if will way about many
then them write would like so these her long make thing see him two has look more
day could go come did number sound no most people my over know water than call
first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under
name very through just form sentence great think say help low line differ turn
cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here
must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father
hello world model token server proxy request response stream test llama swap
"""
WORDS = _WORDS_TEXT.split()  # "world" is listed twice; build_vocab dedups

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    first_normal_id: int  # first id after the control and byte tokens
    word_ids: list[int]  # ids of whole words ("▁the"), boosted in the output head


def build_vocab() -> Vocab:
    import gguf

    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []

    def add(piece: str, score: float, kind: gguf.TokenType) -> int:
        tokens.append(piece)
        scores.append(score)
        types.append(int(kind))
        return len(tokens) - 1

    add("<unk>", 0.0, gguf.TokenType.UNKNOWN)
    for control in ("<s>", "</s>", "<|im_start|>", "<|im_end|>"):
        add(control, 0.0, gguf.TokenType.CONTROL)
    for byte in range(256):
        add(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE)
    first_normal_id = len(tokens)

    # SPM merges the highest-scoring bigram first, so score = -rank.
    pieces = [SPACE] + [chr(c) for c in range(0x21, 0x7F)]
    seen = set(pieces)
    whole_words: set[str] = set()
    for word in WORDS:
        piece = SPACE + word
        whole_words.add(piece)
        for end in range(2, len(piece) + 1):
            prefix = piece[:end]
            if prefix not in seen:
                seen.add(prefix)
                pieces.append(prefix)
    word_ids = []
    for rank, piece in enumerate(pieces):
        token_id = add(piece, -float(rank), gguf.TokenType.NORMAL)
        if piece in whole_words:
            word_ids.append(token_id)
    return Vocab(tokens, scores, types, first_normal_id, word_ids)


def write_tiny_gguf(
    path: str | os.PathLike[str],
    *,
    seed: int = 1234,
    n_ctx_train: int = 4096,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int = 128,
    f16: bool = False,
    name: str = "tiny-random-llama",
) -> int:
    """Write the model to ``path`` and return its size in bytes."""
    import gguf

    n_head_kv = n_head_kv or n_head
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError("n_embd must be a multiple of n_head, and n_head of n_head_kv")
    head_dim = n_embd // n_head
    n_embd_kv = head_dim * n_head_kv

    vocab = build_vocab()
    n_vocab = len(vocab.tokens)
    rng = np.random.default_rng(seed)
    weight_dtype: Any = np.float16 if f16 else np.float32

    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(n_vocab)

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_eot_token_id(4)  # <|im_end|>
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)
    writer.add_chat_template(CHATML_TEMPLATE)

    def matrix(rows: int, cols: int) -> np.ndarray[Any, Any]:
        # numpy shape (rows, cols) is ggml ne {cols, rows}; fan-in is cols.
        weights: np.ndarray[Any, Any] = rng.standard_normal((rows, cols)) / np.sqrt(cols)
        return weights.astype(weight_dtype)

    def norm() -> np.ndarray[Any, Any]:
        return np.ones(n_embd, dtype=np.float32)  # norms stay F32 even with --f16

    writer.add_tensor(
        "token_embd.weight", rng.standard_normal((n_vocab, n_embd)).astype(weight_dtype)
    )
    writer.add_tensor("output_norm.weight", norm())
    head = rng.standard_normal((n_vocab, n_embd)).astype(np.float32)
    head[: vocab.first_normal_id] = 0.0  # unk/control/byte: logit 0, never sampled
    head[vocab.word_ids] *= 2.0  # whole words dominate: the output looks like words
    writer.add_tensor("output.weight", head.astype(weight_dtype))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.attn_q.weight", matrix(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", matrix(n_embd_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", matrix(n_embd_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", matrix(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", matrix(n_embd, n_ff))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path).stat().st_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--out", type=Path, default=Path("tiny.gguf"))
    parser.add_argument("--seed", type=int, default=1234, help="weights seed (default 1234)")
    parser.add_argument(
        "--n-ctx-train", type=int, default=4096, help="llama.context_length (default 4096)"
    )
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-head-kv", type=int, default=None, help="default: n-head (no GQA)")
    parser.add_argument("--n-ff", type=int, default=128)
    parser.add_argument("--f16", action="store_true", help="store 2-D weights as F16")
    parser.add_argument("--name", default="tiny-random-llama", help="general.name")
    args = parser.parse_args(argv)
    try:
        import gguf  # noqa: F401
    except ImportError:
        parser.exit(2, "make_tiny_gguf: needs the 'gguf' package: pip install gguf\n")
    size = write_tiny_gguf(
        args.out,
        seed=args.seed,
        n_ctx_train=args.n_ctx_train,
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        n_head_kv=args.n_head_kv,
        n_ff=args.n_ff,
        f16=args.f16,
        name=args.name,
    )
    print(
        f"wrote {args.out}: {size} bytes, n_layer={args.n_layer}, n_embd={args.n_embd}, "
        f"n_head={args.n_head}/{args.n_head_kv or args.n_head}, n_ff={args.n_ff}, "
        f"seed={args.seed}"
    )


if __name__ == "__main__":
    main()
