"""`python -m medft.chat`: the command is medft.cli.chat."""

from medft.cli.chat import run

if __name__ == "__main__":
    run()
