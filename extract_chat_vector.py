"""Extract a chat vector: CHAT_MODEL - BASE_MODEL, written to CHAT_VECTOR_PATH (the reference script's command line)."""
from chatvector.cli.commands import extract_command

if __name__ == "__main__":
    extract_command()
