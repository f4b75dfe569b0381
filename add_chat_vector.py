"""Add chat vectors to a continually pre-trained model: W = W_cp + sum_i ratio_i * CV_i (the reference script's command line)."""
from chatvector.cli.commands import add_command

if __name__ == "__main__":
    add_command()
