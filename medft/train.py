"""`python -m medft.train`: the command is medft.cli.train."""

from medft.cli.train import run

if __name__ == "__main__":
    run()
