"""`python -m medft.labels [overrides] n=3 [split=train] [plain=true] [ids=true]`: see what is trained.

Prints the first n conversations of a split exactly as the model receives them, with the
supervised tokens highlighted (green on a terminal, «between guillemets» in plain mode,
which is the default when output goes to a file or a log). Text is decoded a whole run of
equally-masked tokens at a time, so byte-fallback pieces (SOLAR's Korean) and spaces print as
in the data; ``ids=true`` shows every token as ``id:piece`` instead.
"""

from __future__ import annotations

import itertools
import os
import sys

from medft.cli import fail, prepare_overrides, user_errors
from medft.runtime import console


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


VIEW_KEYS = {"n": int, "split": str, "plain": _flag, "ids": _flag}
GREEN, DIM, RESET = "\x1b[1;32m", "\x1b[2m", "\x1b[0m"


def split_view_args(argv: list[str]) -> tuple[dict, list[str]]:
    view, rest = {"n": 3, "split": "train", "plain": not sys.stdout.isatty(), "ids": False}, []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in VIEW_KEYS and value:
            try:
                view[key] = VIEW_KEYS[key](value)
            except ValueError:
                fail(f"{key}={value} is not valid; use e.g. n=3 split=train plain=true ids=false")
        else:
            rest.append(arg)
    return view, rest


def mask_runs(labels: list[int]) -> list[tuple[bool, int, int]]:
    """(supervised, start, end) for each maximal run of tokens with the same mask state."""
    runs: list[tuple[bool, int, int]] = []
    for i, label in enumerate(labels):
        trained = label != -100
        if runs and runs[-1][0] == trained:
            runs[-1] = (trained, runs[-1][1], i + 1)
        else:
            runs.append((trained, i, i + 1))
    return runs


def run_texts(tokenizer, ids: list[int], runs: list[tuple[bool, int, int]]) -> list[str]:
    """Each run's share of the whole row decoded at once: a lone byte-fallback token decodes to
    U+FFFD and a lone SentencePiece word loses its space, the whole row does not."""
    full = tokenizer.decode(ids)
    cuts = [0]
    for _, _, end in runs[:-1]:
        prefix = tokenizer.decode(ids[:end])
        cuts.append(max(cuts[-1], len(os.path.commonprefix([full, prefix]))))
    cuts.append(len(full))
    return [full[a:b] for a, b in itertools.pairwise(cuts)]


def _piece(tokenizer, token_id: int) -> str:
    piece = tokenizer.convert_ids_to_tokens(token_id)
    return "".join("␣" if c == " " else c if c.isprintable() else repr(c)[1:-1] for c in piece)


def _ids_texts(tokenizer, ids: list[int], runs) -> list[str]:
    return [" ".join(f"{i}:{_piece(tokenizer, i)}" for i in ids[start:end]) for _, start, end in runs]


def render_row(tokenizer, example: dict, plain: bool, ids: bool = False) -> str:
    """The row's text (or its ``id:piece`` tokens) with supervised runs marked."""
    runs = mask_runs(example["labels"])
    texts = (_ids_texts if ids else run_texts)(tokenizer, example["input_ids"], runs)
    pieces = []
    for index, ((trained, _, _), text) in enumerate(zip(runs, texts, strict=True)):
        if plain:
            pieces.append(f"«{text}»" if trained else text)
        else:
            pieces.append((GREEN if trained else DIM if index else "") + text)
    joined = (" " if ids else "").join(pieces)
    return joined if plain else DIM + joined + RESET


def show(argv: list[str]) -> None:
    view, overrides = split_view_args(argv)
    overrides = prepare_overrides(overrides)
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas, validate

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=overrides)
    validate(cfg)

    from medft.data import load_datasets
    from medft.modeling.models import load_tokenizer
    from medft.text.labels import RowError, build_example
    from medft.text.templates import get_spec

    datasets, _ = load_datasets(cfg.data, progress=False)
    if view["split"] not in datasets:
        fail(f"split={view['split']} does not exist; choose one of: {', '.join(datasets)}")
    rows = datasets[view["split"]]
    tokenizer = load_tokenizer(cfg.model)
    spec = get_spec(cfg.model.chat_template)
    print(
        f"model={cfg.model.name} template={spec.name} data={cfg.data.name} split={view['split']} "
        f"max_length={cfg.train.max_length}; supervised tokens are "
        + ("«marked»" if view["plain"] else f"{GREEN}green{RESET}")
        + ("; tokens shown as id:piece" if view["ids"] else "")
    )
    for index in range(min(view["n"], len(rows))):
        row = rows[index]
        try:
            example = build_example(tokenizer, spec, row["messages"], cfg.train.max_length)
        except RowError as err:
            print(f"\n── {row['id']}: not trained ({err})")
            continue
        supervised = sum(1 for label in example["labels"] if label != -100)
        note = ", user context shortened to fit" if example["truncated"] else ""
        print(f"\n── {row['id']}  ({len(example['input_ids'])} tokens, {supervised} supervised{note})")
        print(render_row(tokenizer, example, view["plain"], view["ids"]))


def main() -> None:
    try:
        with user_errors():
            show(sys.argv[1:])
    except BrokenPipeError:  # `... | head`: the reader has seen enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run() -> None:
    """`python -m medft.labels` and `medft labels` start here."""
    sys.argv[1:] = console.setup(sys.argv[1:])
    main()
