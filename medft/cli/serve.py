"""python -m medft.serve run=<run dir> | model=<name> [chat.port=7860] [chat.host=127.0.0.1]

Starts the chat page and its JSON API (medft.serving.server) on localhost and serves until Ctrl-C.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from medft.cli import prepare_overrides, user_errors
from medft.config import CONF_DIR, register_schemas
from medft.runtime import console
from medft.serving.server import DISCLAIMER, is_loopback, make_server

register_schemas()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="serve")
def main(cfg: DictConfig) -> None:
    with user_errors():
        from medft.serving.chat_session import describe, open_session

        loaded, session = open_session(cfg)
        info = {"model": describe(loaded), "system_prompt": session.system_prompt, "disclaimer": DISCLAIMER}
        server = make_server(session, cfg.chat.host, cfg.chat.port, info)
    if not is_loopback(cfg.chat.host):
        print(
            f"medft: warning: chat.host={cfg.chat.host} is reachable from other machines; the page has no login",
            file=sys.stderr,
        )
    print(f"medft: chat page on {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("medft: stopped", flush=True)


def run() -> None:
    """`python -m medft.serve` and `medft serve` start here."""
    sys.argv[1:] = console.setup(sys.argv[1:])
    with user_errors():
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    main()
