"""`python -m medft.labels [overrides] n=3 [split=train] [plain=true]`: see what is trained.

Prints the first n conversations of a split exactly as the model receives them, with the
supervised tokens highlighted (green on a terminal, «between guillemets» in plain mode,
which is the default when output goes to a file or a log).
"""

from __future__ import annotations

import sys

from medft.cli import check_overrides, fail, user_errors

VIEW_KEYS = {"n": int, "split": str, "plain": lambda v: v.lower() in ("1", "true", "yes")}
GREEN, DIM, RESET = "\x1b[1;32m", "\x1b[2m", "\x1b[0m"


def split_view_args(argv: list[str]) -> tuple[dict, list[str]]:
    view, rest = {"n": 3, "split": "train", "plain": not sys.stdout.isatty()}, []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in VIEW_KEYS and value:
            try:
                view[key] = VIEW_KEYS[key](value)
            except ValueError:
                fail(f"{key}={value} is not valid; use e.g. n=3 split=train plain=true")
        else:
            rest.append(arg)
    return view, rest


def render_row(tokenizer, example: dict, plain: bool) -> str:
    """The row's text, token by token, with supervised spans marked."""
    pieces, supervised_open = [], False
    for token_id, label in zip(example["input_ids"], example["labels"], strict=True):
        text = tokenizer.decode([token_id])
        trained = label != -100
        if trained != supervised_open:
            if plain:
                pieces.append("«" if trained else "»")
            else:
                pieces.append(GREEN if trained else DIM)
            supervised_open = trained
        pieces.append(text)
    if supervised_open:
        pieces.append("»" if plain else "")
    return ("" if plain else DIM) + "".join(pieces) + ("" if plain else RESET)


def show(argv: list[str]) -> None:
    view, overrides = split_view_args(argv)
    check_overrides(overrides)
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas, validate

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=overrides)
    validate(cfg)

    from medft.data import load_datasets
    from medft.labels import RowError, build_example
    from medft.models import load_tokenizer
    from medft.templates import get_spec

    datasets, _ = load_datasets(cfg.data, progress=False)
    if view["split"] not in datasets:
        fail(f"split={view['split']} does not exist; choose one of: {', '.join(datasets)}")
    rows = datasets[view["split"]]
    tokenizer = load_tokenizer(cfg.model)
    spec = get_spec(cfg.model.chat_template)
    print(f"model={cfg.model.name} template={spec.name} data={cfg.data.name} split={view['split']} "
          f"max_length={cfg.train.max_length}; supervised tokens are " + ("«marked»" if view["plain"] else
          f"{GREEN}green{RESET}"))  # fmt: skip
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
        print(render_row(tokenizer, example, view["plain"]))


def main() -> None:
    try:
        with user_errors():
            show(sys.argv[1:])
    except BrokenPipeError:  # `... | head`: the reader has seen enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
