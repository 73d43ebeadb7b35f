"""`python -m medft.worker`: the command is medft.cli.worker."""

from medft.cli.worker import run

if __name__ == "__main__":
    run()
