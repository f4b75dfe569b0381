"""Checks run before anything is written: same architecture, same tensor names, same shapes."""
from collections.abc import Collection

from ..errors import ChatVectorError
from ..io.checkpoint import TensorInfo


def check_same_architecture(config_a: dict, what_a: str, config_b: dict, what_b: str) -> None:
    arch_a = (config_a.get("model_type"), config_a.get("architectures"))
    arch_b = (config_b.get("model_type"), config_b.get("architectures"))
    if arch_a != arch_b:
        raise ChatVectorError(
            f"the {what_a} is {_arch(arch_a)} but the {what_b} is {_arch(arch_b)}; "
            "chat vectors only combine models of one architecture (a base model, its chat model and models trained from it)"
        )


def _arch(arch) -> str:
    model_type, architectures = arch
    return f"{model_type} ({', '.join(architectures or ['?'])})"


def float_names(infos: dict[str, TensorInfo]) -> set[str]:
    return {name for name, info in infos.items() if info.is_float}


def check_same_names(names_a: set[str], what_a: str, names_b: set[str], what_b: str) -> None:
    for missing, has, lacks in ((names_a - names_b, what_a, what_b), (names_b - names_a, what_b, what_a)):
        if missing:
            first = sorted(missing)[:3]
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ChatVectorError(
                f"the {has} has {len(missing)} weight(s) the {lacks} lacks: {', '.join(first)}{more}; "
                "are they models of the same family and size?"
            )


def check_same_shapes(infos_a: dict[str, TensorInfo], what_a: str, infos_b: dict[str, TensorInfo], what_b: str,
                      names: Collection[str], embedding_hint: Collection[str] = (), fix: str = "") -> None:
    """Shapes must match; for embedding tensors the message names the option that fixes it."""
    for name in sorted(names):
        shape_a, shape_b = infos_a[name].shape, infos_b[name].shape
        if shape_a != shape_b:
            hint = fix if name in embedding_hint else "are they models of the same family and size?"
            raise ChatVectorError(f"tensor {name} has shape {list(shape_a)} in the {what_a} but {list(shape_b)} in the {what_b}; {hint}")
