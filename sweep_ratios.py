"""Compare ratios: reply language and turn-taking of CP + ratio x chat vector, a table, a plot and a recommendation."""
from chatvector.cli.commands import sweep_command

if __name__ == "__main__":
    sweep_command()
