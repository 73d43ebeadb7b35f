"""What reaches the user's console: library notices that nobody can act on are filtered here."""

from __future__ import annotations

import logging
import warnings


def quiet_known_warnings() -> None:
    """Silence library plumbing the user cannot act on.

    TRL and peft still pass names that transformers 5 renamed (a FutureWarning on every
    load), and bitsandbytes notes on every import that an optional CPU kernel package is
    absent although its fallback is what runs, correctly.
    """
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6.*", category=FutureWarning)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
