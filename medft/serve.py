"""`python -m medft.serve`: the command is medft.cli.serve."""

from medft.cli.serve import run

if __name__ == "__main__":
    run()
