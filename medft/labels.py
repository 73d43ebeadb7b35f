"""`python -m medft.labels`: the command is medft.cli.labels."""

from medft.cli.labels import run

if __name__ == "__main__":
    run()
