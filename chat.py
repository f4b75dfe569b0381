"""Chat with a model in the terminal, optionally with chat vectors applied in memory (the reference script's command line)."""
from chatvector.cli.commands import chat_command

if __name__ == "__main__":
    chat_command()
