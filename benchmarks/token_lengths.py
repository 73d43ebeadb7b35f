"""Token lengths of a dataset's questions and answers under a real model's tokenizer.

Why: padding waste and the gain of padding-free batching depend on how many *tokens* a row
has, and Korean text costs very different numbers of tokens under different tokenizers.
The synthetic set of ``train_throughput.py`` is drawn in tokens; this script measures the
numbers it is anchored on, and measures a user's own data (e.g. ``data=aihub`` with the
full AI Hub tree) under the tokenizer of the model they train.

    python benchmarks/token_lengths.py --tokenizer <dir or hub id>               # shipped samples
    python benchmarks/token_lengths.py --tokenizer <dir> data=aihub data.path=<AI Hub root>
    python benchmarks/token_lengths.py --tokenizer <dir> --text "<answer text>"  # one text

Prints, per role: rows, median/p5/p95 characters, words (whitespace-separated, i.e. 어절)
and tokens, characters per token and tokens per word. Texts are tokenized without special
tokens (the chat template's own tokens are counted by ``medft.text.labels``, not here).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _common import compose, offline_environment  # benchmarks/ is on sys.path when run as a script


def quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def describe(texts: list[str], tokenizer) -> dict:
    """Length statistics of ``texts`` in characters, words and tokens."""
    chars = [len(t) for t in texts]
    words = [len(t.split()) for t in texts]
    tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return {
        "rows": len(texts),
        "chars": (statistics.median(chars), quantile(chars, 0.05), quantile(chars, 0.95)),
        "words": (statistics.median(words), quantile(words, 0.05), quantile(words, 0.95)),
        "tokens": (statistics.median(tokens), quantile(tokens, 0.05), quantile(tokens, 0.95)),
        "chars_per_token": sum(chars) / max(sum(tokens), 1),
        "tokens_per_word": sum(tokens) / max(sum(words), 1),
    }


def texts_by_role(overrides: list[str]) -> dict[str, list[str]]:
    """Every user and assistant turn of the composed data config's train split."""
    from medft.data.cache import prepare_data

    datasets, _ = prepare_data(compose(overrides).data)
    roles: dict[str, list[str]] = {"user": [], "assistant": []}
    for messages in datasets["train"]["messages"]:
        for message in messages:
            if message["role"] in roles:
                roles[message["role"]].append(message["content"])
    return roles


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="a tokenizer directory or hub id (AutoTokenizer)")
    parser.add_argument("--text", action="append", default=[], help="measure this text instead of a dataset")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data config (default: data=sample)")
    args = parser.parse_args(argv)
    offline_environment()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    except (OSError, ValueError) as err:
        parser.exit(2, f"token_lengths: error: --tokenizer {args.tokenizer}: cannot load a tokenizer ({err})\n")
    groups = {"text": args.text} if args.text else texts_by_role(args.overrides)
    results = {}
    print(f"tokenizer: {args.tokenizer} ({len(tokenizer)} tokens)")
    print(
        f"{'role':<10} {'rows':>6} {'chars med (p5-p95)':>20} {'words med (p5-p95)':>20} "
        f"{'tokens med (p5-p95)':>20} {'chars/tok':>9} {'tok/word':>8}"
    )
    for role, texts in groups.items():
        if not texts:
            print(f"{role:<10} no texts", file=sys.stderr)
            continue
        r = results[role] = describe(texts, tokenizer)
        spans = ["{:.0f} ({:.0f}-{:.0f})".format(*r[key]) for key in ("chars", "words", "tokens")]
        print(
            f"{role:<10} {r['rows']:>6} {spans[0]:>20} {spans[1]:>20} {spans[2]:>20} "
            f"{r['chars_per_token']:>9.2f} {r['tokens_per_word']:>8.2f}"
        )
    return results


if __name__ == "__main__":
    main()
