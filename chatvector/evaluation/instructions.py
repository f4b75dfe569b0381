"""Verifiable instructions (IFEval): lm-eval's own checkers, offline, adapted where Chinese, Japanese and Korean need it.

The checkers are lm-eval's (`lm-eval[ifeval]`, Apache-2.0), imported without letting them reach the network
(they try to fetch nltk's `punkt_tab` on import). Where IFEval's definitions assume English, this module
deviates, and only there (the README lists the same):
- `language:response_language`: judged by the sweep's detector (lingua, and the script for zh-Hant/zh-Hans),
  choosing among the asked language, the built-in sets' and eleven widely spoken ones, where lingua knows the
  language; langdetect (IFEval's, which has no zh-Hant/zh-Hans) only for the languages lingua lacks.
- `length_constraints:number_words`: in zh, zh-Hant, zh-Hans and ja, each Chinese character and kana is a unit,
  and so is each run of other letters or digits (IFEval counts an unspaced Chinese run as one word).
- `length_constraints:number_sentences`: sentences end at . ! ? 。！？ (nltk's English punkt model is not
  fetched); a piece without a letter or digit (a closing quote) is no sentence.
- `keywords:forbidden_words`: a substring match in zh, ja and ko (no word boundaries between CJK characters;
  Korean attaches particles), IFEval's whole-word match elsewhere.
- `punctuation:no_comma`: the full-width comma ， and the enumeration commas 、 ､ count as commas too.
- `change_case:capital_word_frequency`: words split by nltk's Treebank tokenizer within those sentences
  (what `word_tokenize` does after punkt).
- `change_case:english_lowercase` / `english_capital`: "in English" judged as for the response language (langdetect
  took 1 ms a reply and answered at random unless seeded).
"""
import contextlib
import functools
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import ChatVectorError
from .languages import WIDELY_SPOKEN, LanguageDetector, matches, supported_codes

CHARACTER_COUNTED = ("zh", "zh-Hant", "zh-Hans", "ja")
SUBSTRING_WORDS = ("zh", "zh-Hant", "zh-Hans", "ja", "ko")
COMMAS = re.compile("[,，、､]")
_CJK = ("\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
        "\U00020000-\U0002fa1f")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_SENTENCE_END = re.compile(r"(?:[.!?]+|[。！？]+)[\"'”’」』）)\]]*(?=\s|$)|[。！？]+[\"'”’」』）)\]]*")
INSTALL = "pip install 'chatvector[sweep]'"


@dataclass(frozen=True)
class Instruction:
    id: str  # IFEval's instruction id, e.g. "punctuation:no_comma"
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """One reply against one prompt's instructions: per instruction, strict and loose (IFEval's response variants)."""
    strict: tuple[bool, ...]
    loose: tuple[bool, ...]


def count_words(text: str, language: str) -> int:
    """Words, or in zh and ja units: each Chinese character or kana, and each run of other letters or digits."""
    text = unicodedata.normalize("NFKC", text)
    if language not in CHARACTER_COUNTED:
        return len(re.findall(r"\w+", text))
    return len(_CJK_CHAR.findall(text)) + len(re.findall(r"\w+", _CJK_CHAR.sub(" ", text)))


def split_sentences(text: str) -> list[str]:
    """Pieces of text that end at . ! ? 。！？ (with their closing quotes), those with a letter or digit."""
    pieces, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        pieces.append(text[start:end.end()])
        start = end.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if any(ch.isalnum() for ch in p)]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


@contextlib.contextmanager
def _offline_nltk() -> Iterator[None]:
    """lm-eval's checker module asks nltk to download punkt_tab when it is imported; nothing here may use the network."""
    import nltk

    download, nltk.download = nltk.download, lambda *args, **kwargs: False
    try:
        yield
    finally:
        nltk.download = download


@functools.cache
def _registry() -> dict[str, type]:
    """lm-eval's instruction classes by id, with this module's adaptations in place of theirs."""
    try:
        with _offline_nltk(), contextlib.redirect_stdout(io.StringIO()):  # it prints "Downloaded punkt_tab" regardless
            from lm_eval.tasks.ifeval import instructions, instructions_registry
        from langdetect import DetectorFactory
    except ImportError:
        raise ChatVectorError(f"instruction following is checked with lm-eval's IFEval checkers; install them: {INSTALL}") from None
    DetectorFactory.seed = 0  # where langdetect still judges: it samples at random otherwise
    registry = dict(instructions_registry.INSTRUCTION_DICT)
    registry.update(_adapted(instructions))
    return registry


def _adapted(instructions) -> dict[str, type]:
    """Subclasses of lm-eval's checkers; each knows the sweep's target language as `self.language`."""

    class ResponseLanguage(instructions.ResponseLanguageChecker):
        def build_description(self, *, language=None):
            if language is None:
                raise TypeError("language is required")
            self._language = language
            return f"Your ENTIRE response should be in {language}, no other language is allowed."

        def check_following(self, value):
            return _in_language(value, self._language)

    class NumberOfWords(instructions.NumberOfWords):
        def check_following(self, value):
            return _compare(count_words(value, self.language), self._comparison_relation, self._num_words)

    class NumberOfSentences(instructions.NumberOfSentences):
        def check_following(self, value):
            return _compare(count_sentences(value), self._comparison_relation, self._num_sentences_threshold)

    class ForbiddenWords(instructions.ForbiddenWords):
        def check_following(self, value):
            if self.language not in SUBSTRING_WORDS:
                return super().check_following(value)
            lowered = value.lower()
            return not any(word.lower() in lowered for word in self._forbidden_words)

    class NoComma(instructions.CommaChecker):
        def check_following(self, value):
            return not COMMAS.search(value)

    class EnglishLowercase(instructions.LowercaseLettersEnglishChecker):
        def check_following(self, value):
            return value.islower() and _in_language(value, "en")

    class EnglishCapital(instructions.CapitalLettersEnglishChecker):
        def check_following(self, value):
            return value.isupper() and _in_language(value, "en")

    class CapitalWordFrequency(instructions.CapitalWordFrequencyChecker):
        def check_following(self, value):
            from nltk.tokenize import NLTKWordTokenizer

            tokenizer = NLTKWordTokenizer()
            words = [word for sentence in split_sentences(value) for word in tokenizer.tokenize(sentence)]
            return _compare(sum(word.isupper() for word in words), self._comparison_relation, self._frequency)

    return {"language:response_language": ResponseLanguage, "length_constraints:number_words": NumberOfWords,
            "length_constraints:number_sentences": NumberOfSentences, "keywords:forbidden_words": ForbiddenWords,
            "punctuation:no_comma": NoComma, "change_case:capital_word_frequency": CapitalWordFrequency,
            "change_case:english_lowercase": EnglishLowercase, "change_case:english_capital": EnglishCapital}


def _compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


@functools.cache
def _detector(code: str) -> LanguageDetector:
    return LanguageDetector(code, also=WIDELY_SPOKEN)


def _in_language(text: str, code: str) -> bool:
    """lingua (with the script for zh-Hant/zh-Hans) for the languages it knows; langdetect, IFEval's, for the others."""
    if code in supported_codes():
        return matches(_detector(code).detect(text)[0], code)
    import langdetect

    try:
        return langdetect.detect(text) == code
    except langdetect.LangDetectException:
        return True  # IFEval's rule: nothing to judge counts as followed


def known_instructions() -> list[str]:
    return sorted(_registry())


def build(instruction: Instruction, language: str, prompt: str = ""):
    """A checker for one instruction, its arguments checked: an unknown id, an unknown or missing argument is an error."""
    registry = _registry()
    cls = registry.get(instruction.id)
    if cls is None:
        raise ChatVectorError(f"unknown instruction id {instruction.id!r}; the checkers know {', '.join(sorted(registry))}")
    checker = cls(instruction.id)
    checker.language = language
    given = {k: v for k, v in instruction.kwargs.items() if v not in (None, "", [])}  # as IFEval drops empty arguments
    try:
        checker.build_description(**given)
    except (TypeError, ValueError, KeyError) as e:
        raise ChatVectorError(f"instruction {instruction.id} has malformed kwargs {instruction.kwargs!r} ({e})") from None
    missing = [k for k in checker.get_instruction_args_keys() if k != "prompt" and k not in given]
    if missing:  # lm-eval would draw a random value for it: a different instruction every run
        raise ChatVectorError(f"instruction {instruction.id} needs kwargs {missing} (given {instruction.kwargs!r})")
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=prompt)
    return checker


def response_variants(reply: str) -> list[str]:
    """IFEval's loose reading of a reply: as is, without its first line, its last line or both, each also without '*'."""
    lines = reply.split("\n")
    cut = [reply, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [cut[0], cut[0].replace("*", ""), *cut[1:], *(c.replace("*", "") for c in cut[1:])]


class InstructionChecker:
    """Checks replies against one prompt's instructions, with checkers built once (its arguments are checked then)."""

    def __init__(self, instructions: list[Instruction], language: str, prompt: str = ""):
        self.instructions = instructions
        self.checkers = [build(i, language, prompt) for i in instructions]

    def check(self, reply: str) -> Verdict:
        variants = [v for v in response_variants(reply) if v.strip()]
        strict = tuple(bool(reply.strip()) and bool(c.check_following(reply)) for c in self.checkers)
        loose = tuple(any(c.check_following(v) for v in variants) for c in self.checkers)
        return Verdict(strict, loose)
