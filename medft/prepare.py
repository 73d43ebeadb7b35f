"""`python -m medft.prepare`: the command is medft.cli.prepare."""

from medft.cli.prepare import run

if __name__ == "__main__":
    run()
