"""`python -m medft.evaluate`: the command is medft.cli.evaluate."""

from medft.cli.evaluate import run

if __name__ == "__main__":
    run()
