"""`python -m medft.export`: the command is medft.cli.export."""

from medft.cli.export import run

if __name__ == "__main__":
    run()
