"""`python -m medft.compare`: the command is medft.cli.compare."""

from medft.cli.compare import run

if __name__ == "__main__":
    run()
