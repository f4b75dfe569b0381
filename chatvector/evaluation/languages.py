"""Which language a reply is in: lingua (the paper's detector), and hanzidentifier for Chinese script.

Language labels are ISO 639-1 codes, with Chinese split by script: `zh-Hant` (Traditional),
`zh-Hans` (Simplified), and plain `zh` for Chinese text whose characters are common to both.
"""
from dataclasses import dataclass
from functools import cached_property

from ..errors import ChatVectorError

CHINESE_SCRIPTS = ("zh-Hant", "zh-Hans")
BUILTIN = ("zh-Hant", "zh-Hans", "ko", "ja", "en")  # the languages of the built-in prompt sets
WIDELY_SPOKEN = ("es", "fr", "de", "pt", "ru", "it", "vi", "th", "id", "ar", "hi")  # for "is this reply in X": what else it could be


def _lingua():
    try:
        import hanzidentifier  # noqa: F401
        import lingua
    except ImportError:
        raise ChatVectorError("the sweep detects reply languages with lingua-language-detector and hanzidentifier; "
                              "install them: pip install 'chatvector[sweep]'") from None
    return lingua


def supported_codes() -> list[str]:
    lingua = _lingua()
    return sorted({*CHINESE_SCRIPTS, *(language.iso_code_639_1.name.lower() for language in lingua.Language.all())})


def check_language(code: str) -> str:
    """The canonical spelling of a language code (`zh-hant` → `zh-Hant`), or an error listing the supported ones."""
    by_lower = {c.lower(): c for c in supported_codes()}
    canonical = by_lower.get(str(code).strip().lower().replace("_", "-"))
    if canonical is None:
        raise ChatVectorError(f"unknown language code {code!r}; use one of {', '.join(by_lower.values())} "
                              "(zh-Hant / zh-Hans tell the Chinese scripts apart, zh counts both)")
    return canonical


def language_name(code: str) -> str:
    """`zh-Hant` -> Traditional Chinese, `ko` -> Korean: how a judge is told the language."""
    names = {"zh-Hant": "Traditional Chinese", "zh-Hans": "Simplified Chinese", "zh": "Chinese"}
    if code in names:
        return names[code]
    lingua = _lingua()
    return lingua.Language.from_iso_code_639_1(getattr(lingua.IsoCode639_1, code.upper())).name.title()


def matches(label: str | None, target: str) -> bool:
    """Whether a reply labelled `label` is in the target language (plain `zh` text has no character of the other script)."""
    if label is None:
        return False
    if target == "zh":
        return label == "zh" or label in CHINESE_SCRIPTS
    return label == target or (target in CHINESE_SCRIPTS and label == "zh")


def _base(code: str) -> str:
    return "zh" if code.startswith("zh") else code


@dataclass
class LanguageDetector:
    """lingua restricted to the languages a user would confuse: the target, English and the built-in sets' languages
    (`also`: more candidates). Restricting it keeps short replies from landing on a language nobody wrote in."""
    target: str
    also: tuple[str, ...] = ()

    @cached_property
    def _detector(self):
        lingua = _lingua()
        codes = {_base(self.target), *map(_base, BUILTIN), *map(_base, self.also)}
        languages = [lingua.Language.from_iso_code_639_1(getattr(lingua.IsoCode639_1, c.upper())) for c in sorted(codes)]
        return lingua.LanguageDetectorBuilder.from_languages(*languages).build()

    def detect(self, text: str) -> tuple[str | None, float]:
        """(label, lingua's confidence) for a reply; (None, 0) when there is nothing to judge."""
        if not any(ch.isalpha() for ch in text):
            return None, 0.0
        best = self._detector.compute_language_confidence_values(text)[0]
        if best.value <= 0:
            return None, 0.0
        code = best.language.iso_code_639_1.name.lower()
        return (chinese_script(text) if code == "zh" else code), round(float(best.value), 4)


def chinese_script(text: str) -> str:
    """zh-Hant or zh-Hans by the characters only one script uses (the majority, for mixed text); zh if none."""
    import hanzidentifier

    verdict = hanzidentifier.identify(text)
    if verdict == hanzidentifier.TRADITIONAL:
        return "zh-Hant"
    if verdict == hanzidentifier.SIMPLIFIED:
        return "zh-Hans"
    if verdict == hanzidentifier.MIXED:
        traditional = sum(hanzidentifier.is_traditional(ch) and not hanzidentifier.is_simplified(ch) for ch in text)
        simplified = sum(hanzidentifier.is_simplified(ch) and not hanzidentifier.is_traditional(ch) for ch in text)
        if traditional != simplified:
            return "zh-Hant" if traditional > simplified else "zh-Hans"
    return "zh"
