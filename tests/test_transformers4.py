"""Outputs load wherever their inputs loaded: inputs written by transformers 4.x, every kind of output loaded there.

`make test` builds a small venv with the newest transformers 4.x (torch and the rest from the test environment)
and names its python in CHATVECTOR_TF4_PYTHON; run alone, without it, these tests are skipped.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chatvector import add, extract
from tests.conftest import OFFLINE_SITE, ROOT, SCRIPT_ENV
from tests.transformers_probe import probe

TF4 = os.environ.get("CHATVECTOR_TF4_PYTHON")
pytestmark = pytest.mark.skipif(not TF4, reason="needs the transformers 4.x venv that `make test` builds (CHATVECTOR_TF4_PYTHON)")
PROBE = str(ROOT / "tests" / "transformers_probe.py")
END = 6  # <|end|>: the chat model's end of turn; the CP's eos is </s>
LEAKS = ("is_local", "local_files_only", "_commit_hash", "name_or_path")


def _tf4(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(OFFLINE_SITE), "HF_HUB_OFFLINE": "1"}  # the probe puts this checkout on its path itself
    return subprocess.run([TF4, PROBE, *args], capture_output=True, text=True, env=env, timeout=600)


def _legacy_layout(model_dir: Path) -> None:
    """The files as Llama-3's repositories have them: the template inside tokenizer_config.json, `torch_dtype`."""
    config_path, template = model_dir / "tokenizer_config.json", model_dir / "chat_template.jinja"
    if template.is_file():
        config = json.loads(config_path.read_text())
        config_path.write_text(json.dumps({**config, "chat_template": template.read_text()}, indent=2))
        template.unlink()
    model_config = json.loads((model_dir / "config.json").read_text())
    model_config["torch_dtype"] = model_config.pop("dtype")
    (model_dir / "config.json").write_text(json.dumps({**model_config, "transformers_version": "4.40.0"}, indent=2))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per layout, the switch trio written by transformers 4.x, and every kind of output made from it."""
    root = tmp_path_factory.mktemp("tf4")
    built = _tf4("build", str(root / "new"))
    assert built.returncode == 0, built.stderr
    shutil.copytree(root / "new", root / "legacy")
    for name in ("base", "chat", "cp"):
        _legacy_layout(root / "legacy" / name)
    made = {}
    for layout in ("new", "legacy"):
        trio = {name: root / layout / name for name in ("base", "chat", "cp")}
        cv = extract(str(trio["base"]), str(trio["chat"]), str(root / layout / "cv"))
        out = lambda name, **options: add(str(trio["cp"]), [str(cv)], str(root / layout / name), **options)  # noqa: E731
        made[layout] = {
            **trio, "vector": cv, "plain": out("plain", ratios=[1.0]), "skip_embed": out("skip_embed", ratios=[1.0], skip_embed=True),
            "map_ids": out("map_ids", ratios=[1.0], skip_embed=True, special_tokens_map={END: END}),
            "map_strings": out("map_strings", ratios=[1.0], special_tokens_map={"<|end|>": "<|end|>", "<|assistant|>": "<|assistant|>"}),
            "auto": out("auto", ratios=[1.0], special_tokens_map="auto"), "align_vocab": out("align_vocab", ratios=[1.0], align_vocab=True),
            "float32": out("float32", ratios=[1.0], dtype="float32"),
        }
    sweep = subprocess.run([sys.executable, str(ROOT / "sweep_ratios.py"), made["legacy"]["cp"], made["legacy"]["vector"], "--language",
                            "zh-Hant", "--ratios", "[0.5,0.6]", "--max_new_tokens", "16", "--out", root / "sweep", "--write_best",
                            root / "legacy" / "write_best"], capture_output=True, text=True, env=SCRIPT_ENV,
                           timeout=600)
    assert sweep.returncode == 0, sweep.stderr
    made["legacy"]["write_best"] = root / "legacy" / "write_best"
    return made


OUTPUTS = ["plain", "skip_embed", "map_ids", "map_strings", "auto", "align_vocab", "float32"]


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_every_output_keeps_the_cps_tokenizer_class_and_leaks_no_loader_state(layout, outputs):
    made = outputs[layout]
    cp_class = json.loads((made["cp"] / "tokenizer_config.json").read_text())["tokenizer_class"]
    assert cp_class == "PreTrainedTokenizerFast"
    for name in [*OUTPUTS, *(["write_best"] if layout == "legacy" else [])]:
        for file in ("tokenizer_config.json", "special_tokens_map.json", "config.json", "generation_config.json"):
            text = (made[name] / file).read_text()
            assert not any(f'"{key}"' in text for key in LEAKS) and str(made["cp"].parent) not in text, (name, file)
        assert json.loads((made[name] / "tokenizer_config.json").read_text())["tokenizer_class"] == cp_class, name


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_every_output_states_one_eos_bos_and_pad_in_all_its_files(layout, outputs):
    """The chat model's eos (<|end|>, 6), the CP's bos and pad, wherever a file states them; the template where the chat model keeps it."""
    made = outputs[layout]
    for name in [*OUTPUTS, *(["write_best"] if layout == "legacy" else [])]:
        out = made[name]
        tokenizer_config, special, config, generation = (json.loads((out / f).read_text()) for f in (
            "tokenizer_config.json", "special_tokens_map.json", "config.json", "generation_config.json"))
        assert tokenizer_config["eos_token"] == special["eos_token"] == "<|end|>", name
        assert tokenizer_config["bos_token"] == special["bos_token"] == "<s>" and tokenizer_config["pad_token"] == special["pad_token"] == "<unk>"
        for ids in (config, generation):
            assert END in ids["eos_token_id"] and ids["bos_token_id"] == 1 and ids["pad_token_id"] == 0, (name, ids)
        assert config["eos_token_id"] == generation["eos_token_id"], name
        if layout == "legacy":  # Llama-3's layout: the template stays inside tokenizer_config.json
            assert "chat_template" in tokenizer_config and not (out / "chat_template.jinja").exists(), name
        else:
            assert "chat_template" not in tokenizer_config and (out / "chat_template.jinja").is_file(), name


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_config_files_carry_only_the_keys_their_inputs_had(layout, outputs):
    made = outputs[layout]
    cp_config = json.loads((made["cp"] / "config.json").read_text())
    chat_generation = json.loads((made["chat"] / "generation_config.json").read_text())
    for name in OUTPUTS:
        config = json.loads((made[name] / "config.json").read_text())
        assert set(config) == set(cp_config), name
        assert {k: v for k, v in config.items() if k not in ("eos_token_id", "dtype", "torch_dtype")} == \
            {k: v for k, v in cp_config.items() if k not in ("eos_token_id", "dtype", "torch_dtype")}, name
        assert set(json.loads((made[name] / "generation_config.json").read_text())) == set(chat_generation), name
    dtype_key = "torch_dtype" if layout == "legacy" else "dtype"  # the key the CP's transformers version reads
    assert json.loads((made["float32"] / "config.json").read_text())[dtype_key] == "float32"
    wrote = {"new": "transformers 4.57", "legacy": "transformers 4.40.0"}[layout]  # the CP's config.json says which
    assert f"as the CP's own {wrote}" in (made["plain"] / "README.md").read_text()


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_transformers_4_loads_every_output_as_transformers_5_does_and_stops_at_the_chat_eos(layout, outputs):
    made = outputs[layout]
    names = ["vector", *OUTPUTS, *(["write_best"] if layout == "legacy" else [])]
    result = _tf4("load", *(str(made[name]) for name in names))
    assert result.returncode == 0, result.stderr
    old = json.loads(result.stdout.strip().splitlines()[-1])
    assert old.pop("transformers").startswith("4.")
    for name in names:
        new = probe(made[name], generate=name != "vector")
        assert old[str(made[name])] == new, name
        if name not in ("vector", "skip_embed"):  # --skip_embed alone keeps the CP's head row for <|end|>: it never ends a turn
            reply = new["reply_ids"]
            assert len(reply) < 24 and reply[-1] == END, (name, reply)  # the turn ends, at the chat eos
