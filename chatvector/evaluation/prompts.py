"""The prompts a sweep answers: built-in verifiable sets per language, the user's files, and safety sets.

Every prompt set is checked before the model loads: its rows, its instructions (each checker is built, so an
unknown id or a malformed kwargs field is an error), its labels, and that it is written in the target language.
"""
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ChatVectorError
from .instructions import Instruction, InstructionChecker
from .languages import BUILTIN, LanguageDetector, matches

SAFETY_LABELS = ("harmful", "benign")
SAFETY_CATEGORIES = ("violence", "self_harm", "crime", "hate_insult", "privacy", "dangerous_chemistry", "fraud")
MIN_IN_LANGUAGE = 0.5  # a set whose prompts are mostly in another language is the wrong set


@dataclass(frozen=True)
class Prompt:
    """One prompt: plain, with verifiable instructions (IFEval's), or a safety request with its label."""
    text: str
    key: str  # its id in its set: IFEval's key, or its line number
    instructions: tuple[Instruction, ...] = ()
    label: str | None = None  # safety: harmful or benign
    category: str | None = None

    @property
    def kind(self) -> str:
        return "safety" if self.label else "instructions" if self.instructions else "plain"

    def asks_for_another_language(self, target: str) -> bool:
        """An instruction to answer in another language: such a reply says nothing of the target-language rate."""
        return any(i.id == "language:response_language" and not matches(i.kwargs.get("language"), target) for i in self.instructions)


def load_prompts(spec: str, language: str) -> list[Prompt]:
    """`builtin` (the verifiable set of `language`), FILE.txt (a prompt per line) or FILE.jsonl ({"prompt"}, or IFEval's rows)."""
    if spec == "builtin":
        prompts = _jsonl(_builtin("ifeval", language, "--prompts"), f"built-in {language} set", language)
    else:
        path = _existing(spec, "--prompts", "builtin")
        text = path.read_text(encoding="utf-8")
        prompts = _jsonl(text, str(path), language) if path.suffix == ".jsonl" else \
            [Prompt(line.strip(), str(n)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not prompts:
            raise ChatVectorError(f"prompt file {spec} has no prompts; write one prompt per line (.txt) or a \"prompt\" field per line (.jsonl)")
        _check_language(prompts, language, spec)
    return prompts


def load_safety_prompts(spec: str, language: str) -> list[Prompt]:
    """`builtin` (the harmful and benign set of `language`) or FILE.jsonl of {"prompt", "label", "category"} rows."""
    text = _builtin("safety", language, "--safety_prompts") if spec == "builtin" else \
        _existing(spec, "--safety_prompts", "builtin").read_text(encoding="utf-8")
    where = f"built-in {language} safety set" if spec == "builtin" else spec
    prompts = []
    for number, row in _rows(text, where):
        label, category = row.get("label"), row.get("category")
        if label not in SAFETY_LABELS:
            raise ChatVectorError(f"{where} line {number}: \"label\" must be \"harmful\" or \"benign\", got {label!r}; "
                                  "each row is {\"prompt\", \"label\", \"category\"}")
        prompts.append(Prompt(row["prompt"].strip(), str(number), label=label, category=str(category or "other")))
    if not prompts:
        raise ChatVectorError(f"{where} has no prompts; write one {{\"prompt\", \"label\", \"category\"}} object per line")
    if not any(p.label == "harmful" for p in prompts):
        raise ChatVectorError(f"{where} has no harmful prompts: a refusal rate needs some")
    if spec != "builtin":
        _check_language(prompts, language, spec)
    return prompts


def check_unique(prompts: list[Prompt]) -> None:
    """A prompt's reply is kept by its text: the same text twice (in one set, or in both) would be one reply for two rows."""
    seen: dict[str, Prompt] = {}
    for prompt in prompts:
        if prompt.text in seen:
            raise ChatVectorError(f"the prompt {prompt.text[:60]!r} appears twice (keys {seen[prompt.text].key} and {prompt.key}); "
                                  "remove one")
        seen[prompt.text] = prompt


def _builtin(kind: str, language: str, flag: str) -> str:
    name = "zh-Hant" if language == "zh" else language
    if name not in BUILTIN:
        raise ChatVectorError(f"there is no built-in {'safety ' if kind == 'safety' else ''}prompt set for {language} "
                              f"(built in: {', '.join(BUILTIN)}); pass {flag} FILE.jsonl")
    return resources.files(__package__).joinpath("data", kind, f"{name}.jsonl").read_text(encoding="utf-8")


def _existing(spec: str, flag: str, other: str) -> Path:
    path = Path(spec)
    if not path.is_file():
        raise ChatVectorError(f"{flag} file {spec} does not exist; pass {flag} {other} or a file")
    return path


def _rows(text: str, where: str):
    """(line number, object with a non-empty "prompt") per non-empty line."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ChatVectorError(f"{where} line {number} is not JSON; a .jsonl prompt file has one object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ChatVectorError(f"{where} line {number} has no \"prompt\" text field")
        yield number, row


def _jsonl(text: str, where: str, language: str) -> list[Prompt]:
    prompts = []
    for number, row in _rows(text, where):
        ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
        key = str(row.get("key", number))
        if ids is None:
            prompts.append(Prompt(row["prompt"].strip(), key))
            continue
        if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs) or \
                not all(isinstance(i, str) for i in ids) or not all(isinstance(k, dict) for k in kwargs):
            raise ChatVectorError(f"{where} line {number}: \"instruction_id_list\" and \"kwargs\" must be lists of equal length "
                                  "(an id and a dict of arguments per instruction), as in IFEval's files")
        instructions = tuple(Instruction(i, k) for i, k in zip(ids, kwargs))
        try:
            InstructionChecker(list(instructions), language, row["prompt"])  # every checker built: its arguments checked
        except ChatVectorError as e:
            raise ChatVectorError(f"{where} line {number}: {e}") from None
        prompts.append(Prompt(row["prompt"], key, instructions))
    return prompts


def _check_language(prompts: list[Prompt], language: str, where: str) -> None:
    detector = LanguageDetector(language)
    labels = [detector.detect(p.text)[0] for p in prompts]
    if sum(matches(label, language) for label in labels) >= MIN_IN_LANGUAGE * len(labels):
        return
    counts: dict[str, int] = {}
    for label in labels:
        counts[label or "none"] = counts.get(label or "none", 0) + 1
    found = max(counts, key=counts.get)
    raise ChatVectorError(f"{where} is written in {found} ({counts[found]} of {len(labels)} prompts), not in {language}; "
                          f"pass a prompt set in {language}, or --language {found}")
