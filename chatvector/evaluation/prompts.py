"""The prompts a sweep answers: a built-in everyday set per language, or the user's .txt / .jsonl file."""
import json
from importlib import resources
from pathlib import Path

from ..errors import ChatVectorError
from .languages import BUILTIN


def builtin_prompts(language: str) -> list[str]:
    """The built-in set (written for this project) of `language`; bare `zh` takes the Traditional set."""
    name = "zh-Hant" if language == "zh" else language
    if name not in BUILTIN:
        raise ChatVectorError(f"there is no built-in prompt set for {language} (built in: {', '.join(BUILTIN)}); "
                              "pass --prompts FILE.txt (one prompt per line) or FILE.jsonl (a \"prompt\" field per line)")
    return _lines(resources.files(__package__).joinpath("data", "prompts", f"{name}.txt").read_text(encoding="utf-8"))


def load_prompts(spec: str, language: str) -> list[str]:
    if spec == "builtin":
        return builtin_prompts(language)
    path = Path(spec)
    if not path.is_file():
        raise ChatVectorError(f"prompt file {spec} does not exist; pass --prompts builtin or a .txt / .jsonl file")
    text = path.read_text(encoding="utf-8")
    prompts = _jsonl_prompts(text, path) if path.suffix == ".jsonl" else _lines(text)
    if not prompts:
        raise ChatVectorError(f"prompt file {spec} has no prompts; write one prompt per line (.txt) or a \"prompt\" field per line (.jsonl)")
    return prompts


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _jsonl_prompts(text: str, path: Path) -> list[str]:
    prompts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ChatVectorError(f"{path} line {number} is not JSON; a .jsonl prompt file has one {{\"prompt\": ...}} object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ChatVectorError(f"{path} line {number} has no \"prompt\" text field")
        prompts.append(row["prompt"].strip())
    return prompts
