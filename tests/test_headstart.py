"""The head start: output files planned and copied before torch imports, adopted only when identical."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatvector import add, extract, interrupts
from chatvector.io import headstart, stream
from chatvector.io.checkpoint import Checkpoint
from chatvector.merge.embeddings import find_embedding_keys, known_embedding_keys
from chatvector.errors import ChatVectorError
from chatvector.io.headstart import EmbeddingFile, PlannedFile, Stored, head_start
from tests.conftest import ARCHS, ROOT, SCRIPT_ENV

CHAT_EMBEDDINGS = EmbeddingFile("chat_embeddings", known_embedding_keys)  # as extract_chat_vector.py plans it


def _files(directory: Path) -> dict[str, bytes]:
    """The weight files and indexes the writer made (not the fingerprint, whose metadata order the library varies)."""
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.safetensors*")) if not p.name.startswith("base_fingerprint")}


def _count_seed_copies(monkeypatch) -> list[str]:
    """Names of the files whose seeds the writer thread copied itself."""
    copied = []
    real = stream._copy_seed

    def counted(writer, *args):
        copied.append(writer.path.name)
        return real(writer, *args)

    monkeypatch.setattr(stream, "_copy_seed", counted)
    return copied


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("shard_size", ["5GB", "20KB"])
def test_an_adopted_head_start_writes_the_same_bytes_and_the_writer_copies_no_seed(arch, shard_size, trios, monkeypatch, tmp_path):
    monkeypatch.setattr(headstart, "PIECE_BYTES", 4096)  # many pieces, and the writer catches up with the copies
    monkeypatch.setattr(headstart, "AHEAD_BYTES", 3 * 4096)
    t = trios[arch]
    extract(str(t["base"]), str(t["chat"]), str(tmp_path / "cv_plain"), max_shard_size=shard_size)
    add(str(t["cp"]), [str(tmp_path / "cv_plain")], str(tmp_path / "model_plain"), ratios=[0.5], max_shard_size=shard_size)
    copied = _count_seed_copies(monkeypatch)

    head = head_start(str(t["chat"]), str(tmp_path / "cv"), False, [str(t["base"]), str(t["chat"])], "chat_vector", shard_size, True,
                      CHAT_EMBEDDINGS)
    try:
        extract(str(t["base"]), str(t["chat"]), str(tmp_path / "cv"), max_shard_size=shard_size, head=head)
    finally:
        head.close()
    head = head_start(str(t["cp"]), str(tmp_path / "model"), False, [str(t["cp"]), str(tmp_path / "cv")], "model", shard_size, False)
    try:
        add(str(t["cp"]), [str(tmp_path / "cv")], str(tmp_path / "model"), ratios=[0.5], max_shard_size=shard_size, head=head)
    finally:
        head.close()

    assert _files(tmp_path / "cv") == _files(tmp_path / "cv_plain")
    assert _files(tmp_path / "model") == _files(tmp_path / "model_plain")
    assert len(_files(tmp_path / "model")) > (2 if shard_size == "20KB" else 0)
    assert copied == []  # the head start placed every seed, chat_embeddings' too
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


@pytest.mark.parametrize("arch", ARCHS)
def test_extracts_head_start_plans_the_embeddings_the_model_itself_names(arch, trios, tmp_path):
    chat = trios[arch]["chat"]
    with Checkpoint(chat) as checkpoint:
        keys = find_embedding_keys(chat, list(checkpoint.infos))  # the meta-device model: the oracle
    head = head_start(str(chat), str(tmp_path / "cv"), False, [str(chat)], "chat_vector", "5GB", True, CHAT_EMBEDDINGS)
    try:
        assert [stored.name for stored, _ in head._files["chat_embeddings.safetensors"].tensors] == keys.names
    finally:
        head.close()
    unlisted = tmp_path / "unlisted"
    shutil.copytree(chat, unlisted)
    config = json.loads((unlisted / "config.json").read_text())
    (unlisted / "config.json").write_text(json.dumps({**config, "model_type": "not-a-listed-architecture"}))
    head = head_start(str(unlisted), str(tmp_path / "cv"), False, [str(unlisted)], "chat_vector", "5GB", True, CHAT_EMBEDDINGS)
    try:
        assert list(head._files) == ["chat_vector.safetensors"]  # extract names these by building the model: not guessed here
    finally:
        head.close()


def test_a_head_start_planned_differently_is_dropped_and_leaves_no_file(trios, vectors, monkeypatch, tmp_path):
    t = trios["llama"]
    add(str(t["cp"]), [str(vectors["llama"])], str(tmp_path / "plain"), ratios=[0.5])
    copied = _count_seed_copies(monkeypatch)
    head = head_start(str(t["cp"]), str(tmp_path / "out"), False, [str(t["cp"])], "model", "20KB", False)  # other shards
    try:
        add(str(t["cp"]), [str(vectors["llama"])], str(tmp_path / "out"), ratios=[0.5], head=head)
    finally:
        head.close()
    assert _files(tmp_path / "out") == _files(tmp_path / "plain")
    assert sorted(_files(tmp_path / "out")) == ["model.safetensors"]  # none of the head start's planned shards is left
    assert copied == ["model.safetensors"] * len(copied) and copied  # written from scratch


def test_no_head_start_where_the_command_will_refuse_or_cannot_use_one(trios, tmp_path):
    t = trios["llama"]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert head_start(str(t["cp"]), str(taken), False, [str(t["cp"])], "model", "5GB", False) is None
    assert head_start(str(t["cp"]), str(t["cp"] / "out"), True, [str(t["cp"])], "model", "5GB", False) is None  # inside an input
    assert head_start("org/not-a-local-dir", str(tmp_path / "out"), False, [], "model", "5GB", False) is None
    assert head_start(str(t["cp"]), str(tmp_path / "new" / "out"), False, [str(t["cp"])], "model", "5GB", False) is None
    bin_model = tmp_path / "bin_model"
    bin_model.mkdir()
    (bin_model / "pytorch_model.bin").write_bytes(b"")
    assert head_start(str(bin_model), str(tmp_path / "out"), False, [str(bin_model)], "model", "5GB", False) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin_model", "taken"]  # no partial output was made
    assert (taken / "keep.txt").read_text() == "mine"


def test_the_head_start_copies_no_further_ahead_than_its_bound(trios, monkeypatch, tmp_path):
    piece, ahead = 256, 1024
    monkeypatch.setattr(headstart, "PIECE_BYTES", piece)
    monkeypatch.setattr(headstart, "AHEAD_BYTES", ahead)
    source = trios["llama"]["cp"]
    head = head_start(str(source), str(tmp_path / "out"), False, [str(source)], "model", "5GB", False)
    try:
        planned = head._files["model.safetensors"]
        file, data = head.partial / "model.safetensors", len(planned.header)
        total = planned.end
        assert total > data + 16 * ahead  # the bound matters for this model
        _settled(file)
        assert file.stat().st_size <= data + ahead + piece  # nothing asked for yet: the bound, give or take a piece
        head.placed("model.safetensors", data, 8 * ahead).result(timeout=30)
        _settled(file)
        assert data + 8 * ahead <= file.stat().st_size <= data + 9 * ahead + piece
        head.placed("model.safetensors", data, total - data).result(timeout=30)
        assert file.stat().st_size == total
    finally:
        head.close()
    assert not head.partial.exists()


def test_tensors_stored_back_to_back_are_copied_as_one_run():
    """One copy call per run, not per tensor: each call then waits for the GIL the import holds."""
    a, b = Path("a.safetensors"), Path("b.safetensors")
    stored = [Stored("x", "BF16", (4,), a, 100), Stored("y", "BF16", (2,), a, 108),  # back to back in a
              Stored("z", "BF16", (2,), a, 120),  # a gap in a (a tensor left out)
              Stored("w", "BF16", (3,), b, 100)]  # another file
    planned = PlannedFile("out.safetensors", b"h" * 8, [(stored[0], 8), (stored[1], 16), (stored[2], 20), (stored[3], 24)], 0)
    assert [([t.name for t in run.tensors], run.at, run.nbytes) for run in planned.runs] == [(["x", "y"], 8, 12), (["z"], 20, 4), (["w"], 24, 6)]
    assert planned.runs[0].truncated_tensor(110).name == "y" and planned.runs[0].truncated_tensor(107).name == "x"


def _settled(file: Path) -> None:
    """Wait until the copying thread has stopped growing the file (it waits on its bound)."""
    while not file.exists():
        time.sleep(0.05)
    size = -1
    while size != file.stat().st_size:
        size = file.stat().st_size
        time.sleep(0.2)


def test_an_input_truncated_after_planning_fails_with_a_clear_error(trios, monkeypatch, tmp_path):
    monkeypatch.setattr(headstart, "AHEAD_BYTES", 0)  # nothing is copied before the writer asks
    model = tmp_path / "cp"
    shutil.copytree(trios["llama"]["cp"], model)
    head = head_start(str(model), str(tmp_path / "out"), False, [str(model)], "model", "5GB", False)
    try:
        planned = head._files["model.safetensors"]
        with open(model / "model.safetensors", "r+b") as f:
            f.truncate(len(planned.header) + 16)
        with pytest.raises(ChatVectorError, match="was truncated while reading"):
            head.placed("model.safetensors", len(planned.header), planned.end).result(timeout=30)
    finally:
        head.close()
    assert not head.partial.exists()


def test_ctrl_c_before_any_cleanup_block_removes_a_head_starts_partial_output(monkeypatch, tmp_path):
    partial = tmp_path / ".out.chatvector-partial-1-x"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"x" * 100)
    interrupts.remove_on_exit(partial)

    def exit_now(status):
        raise SystemExit(status)

    monkeypatch.setattr(os, "_exit", exit_now)
    with pytest.raises(SystemExit) as exited:
        interrupts._on_interrupt(2, None)
    interrupts.keep_on_exit(partial)
    assert exited.value.code == 130 and not partial.exists()


ADOPTIONS = """
import runpy, sys
import chatvector.io.headstart as h
real = h.HeadStart.adopt
def adopt(self, path, header, seeds):
    adopted = real(self, path, header, seeds)
    print(f"adopted {path.name}: {adopted}", file=sys.stderr)
    return adopted
h.HeadStart.adopt = adopt
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run_traced(script: str, *args) -> subprocess.CompletedProcess:
    env = SCRIPT_ENV
    return subprocess.run([sys.executable, "-c", ADOPTIONS, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_commands_start_with_a_head_start_on_the_cpu_and_not_for_a_dtype_change(trios, tmp_path):
    t = trios["llama"]
    result = _run_traced("extract_chat_vector.py", t["base"], t["chat"], tmp_path / "cv")
    assert result.returncode == 0 and "adopted chat_vector.safetensors: True" in result.stderr, result.stderr
    assert "adopted chat_embeddings.safetensors: True" in result.stderr, result.stderr
    result = _run_traced("add_chat_vector.py", t["cp"], tmp_path / "cv", tmp_path / "model", "--ratio", "0.5")
    assert result.returncode == 0 and "adopted model.safetensors: True" in result.stderr, result.stderr
    result = _run_traced("add_chat_vector.py", t["cp"], tmp_path / "cv", tmp_path / "model32", "--dtype", "float32")
    assert result.returncode == 0 and "adopted" not in result.stderr, result.stderr
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_the_head_start_imports_no_torch():
    """It exists to copy while torch imports: planning, embeddings' names included, must not import it first."""
    code = "import sys, chatvector.cli.commands, chatvector.io.headstart; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=SCRIPT_ENV,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
