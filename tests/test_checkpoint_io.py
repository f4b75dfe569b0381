"""Our streaming safetensors writer and positional reader, checked against the safetensors library."""
import errno
import os
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from chatvector import ChatVectorError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io import filemap, stream
from chatvector.io.filemap import room_to_write_in_place
from chatvector.io.stream import OutputTensor, copy_tensor, seed_of, write_tensors
from chatvector.io.layout import parse_size, plan_shards
from chatvector.io.writer import SafetensorsWriter, TensorSpec

TENSORS = {
    "a.weight": torch.randn(7, 5).to(torch.bfloat16),
    "b.scalar": torch.tensor(3.5, dtype=torch.float64),
    "c.empty": torch.zeros(0, 4, dtype=torch.float16),
    "d.ids": torch.arange(11, dtype=torch.int64),
    "e.mask": torch.tensor([True, False, True]),
    "f.vector": torch.randn(9),
}


def test_streamed_file_reads_back_identically_with_the_safetensors_library(tmp_path):
    specs = [TensorSpec(n, t.dtype, tuple(t.shape)) for n, t in TENSORS.items()]
    writer = SafetensorsWriter(tmp_path / "x.safetensors", specs)
    for name, tensor in TENSORS.items():
        for chunk in (tensor.split(3) if tensor.dim() else [tensor]):  # several chunks per tensor
            writer.write(name, chunk)
    writer.close()
    loaded = load_file(tmp_path / "x.safetensors")
    assert loaded.keys() == TENSORS.keys()
    assert all(torch.equal(loaded[n], t) for n, t in TENSORS.items())
    from safetensors import safe_open

    with safe_open(tmp_path / "x.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_writer_refuses_to_close_an_incomplete_file(tmp_path):
    writer = SafetensorsWriter(tmp_path / "x.safetensors", [TensorSpec("a", torch.float32, (4,))])
    writer.write("a", torch.zeros(2))
    with pytest.raises(RuntimeError, match="closed before all its tensors were written"):
        writer.close()


def test_reader_reads_rows_of_library_written_files(tmp_path):
    save_file(TENSORS, tmp_path / "model.safetensors")
    with Checkpoint(tmp_path) as checkpoint:
        assert {n: (i.dtype, i.shape) for n, i in checkpoint.infos.items()} == {n: (t.dtype, tuple(t.shape)) for n, t in TENSORS.items()}
        for name, tensor in TENSORS.items():
            assert torch.equal(checkpoint.read(name), tensor)
        assert torch.equal(checkpoint.read("a.weight", 2, 5), TENSORS["a.weight"][2:5])


def test_sharded_output_has_one_index_and_tensors_in_order(tmp_path):
    outputs = [OutputTensor(TensorSpec(n, t.dtype, tuple(t.shape)), lambda a, b, into, t=t: t[a:b] if t.dim() else t)
               for n, t in TENSORS.items()]
    write_tensors(tmp_path, "model", outputs, 40, "test")
    with Checkpoint(tmp_path) as checkpoint:
        assert list(checkpoint.infos) == list(TENSORS)
        assert all(torch.equal(checkpoint.read(n), t) for n, t in TENSORS.items())
    assert (tmp_path / "model.safetensors.index.json").is_file()


def _doubled(tensor: torch.Tensor, start: int, stop: int, into: torch.Tensor | None) -> torch.Tensor:
    """Rows [start, stop) of 2 * tensor, computed into `into` where the stream gives a place in the file."""
    rows = tensor[start:stop] if tensor.dim() else tensor
    return torch.mul(rows, 2) if into is None else torch.mul(rows, 2, out=into)


def _seeded_outputs(source: Checkpoint, computed: str) -> list[OutputTensor]:
    """Every tensor copied from `source`; floating ones are then overwritten with their double, and `computed`
    is computed into a fresh place instead."""
    outputs = []
    for name, info in source.infos.items():
        spec, doubled = TensorSpec(name, info.dtype, info.shape), lambda a, b, into, t=TENSORS[name]: _doubled(t, a, b, into)
        if name == computed:
            outputs.append(OutputTensor(spec, doubled))
        else:
            outputs.append(OutputTensor(spec, doubled, seed_of(source, name), seed_is_result=not info.dtype.is_floating_point))
    return outputs


@pytest.mark.parametrize("shard_size", [40, 10**6])
@pytest.mark.parametrize("route", ["computed in place", "copied into place", "write calls"])
def test_seeded_tensors_are_copied_then_overwritten_among_computed_ones(shard_size, route, monkeypatch, tmp_path):
    """Rows computed over a seed: into a writable map of the file; computed elsewhere and copied into the map; or,
    without room on the disk for writes through a map, written with write calls."""
    monkeypatch.setattr(stream, "SEEDED_CHUNK_NUMEL", 4)  # several copies per tensor, queued ahead of the writes
    monkeypatch.setattr(stream, "CHUNK_NUMEL", 2)  # several computed pieces per copy
    monkeypatch.setattr(stream, "LOOKAHEAD_BYTES", 64)
    seen, written_over = [], set()
    compute_over_seed, overwrite = stream._compute_over_seed, SafetensorsWriter.overwrite
    monkeypatch.setattr(stream, "_compute_over_seed",
                        lambda *args: seen.append((args[-1], threading.current_thread().name[:10])) or compute_over_seed(*args))
    monkeypatch.setattr(SafetensorsWriter, "overwrite", lambda self, name, *args: written_over.add(name) or overwrite(self, name, *args))
    if route == "copied into place":
        monkeypatch.setattr(sys.modules[__name__], "_doubled", lambda t, a, b, into: 2 * t[a:b] if t.dim() else 2 * t)
    if route == "write calls":
        monkeypatch.setattr(stream, "room_to_write_in_place", lambda path, nbytes: False)
    save_file(TENSORS, tmp_path / "model.safetensors")
    (tmp_path / "out").mkdir()
    with Checkpoint(tmp_path) as source:
        write_tensors(tmp_path / "out", "model", _seeded_outputs(source, computed="f.vector"), shard_size, "test")
        order = list(source.infos)
    with Checkpoint(tmp_path / "out") as written:
        assert list(written.infos) == order
        for name, tensor in TENSORS.items():
            assert torch.equal(written.read(name), 2 * tensor if tensor.dtype.is_floating_point else tensor), name
        over_seeds = {n for n, i in written.infos.items() if i.dtype.is_floating_point and i.rows and n != "f.vector"}
    assert len(seen) > 4 and set(seen) == ({(False, "MainThread")} if route == "write calls" else {(True, "arithmetic")})
    assert written_over == (over_seeds if route == "write calls" else set())


def test_rows_over_a_seed_at_an_offset_no_tensor_can_view_take_write_calls(monkeypatch, tmp_path):
    """A float32 tensor after a 3-byte one starts at an odd offset in the output: it cannot be viewed in place."""
    tensors = {"a.mask": torch.tensor([True, False, True]), "b.vector": torch.randn(10)}
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "out").mkdir()
    written_over = []
    overwrite = SafetensorsWriter.overwrite
    monkeypatch.setattr(SafetensorsWriter, "overwrite", lambda self, name, *args: written_over.append(name) or overwrite(self, name, *args))
    with Checkpoint(tmp_path) as source:
        outputs = [copy_tensor("a.mask", source),
                   OutputTensor(TensorSpec("b.vector", torch.float32, (10,)), lambda a, b, into: _doubled(tensors["b.vector"], a, b, into),
                                seed_of(source, "b.vector"))]
        write_tensors(tmp_path / "out", "model", outputs, 10**6, "test")
    with Checkpoint(tmp_path / "out") as written:
        assert written.infos["b.vector"].offset % 4 == 3 and written_over == ["b.vector"]
        assert torch.equal(written.read("a.mask"), tensors["a.mask"]) and torch.equal(written.read("b.vector"), 2 * tensors["b.vector"])


def test_room_to_write_in_place_asks_for_the_bytes_and_a_margin(monkeypatch, tmp_path):
    free = {"bytes": 0}
    monkeypatch.setattr(os, "statvfs", lambda path: os.statvfs_result((4096, 4096, 0, 0, free["bytes"] // 4096, 0, 0, 0, 0, 255)))
    free["bytes"] = filemap._ROOM_MARGIN + 2**30
    assert room_to_write_in_place(tmp_path, 2**30) and not room_to_write_in_place(tmp_path, 2**30 + 4096)
    free["bytes"] = 0
    assert not room_to_write_in_place(tmp_path, 1)


def test_seeds_are_copied_with_pread_and_pwrite_where_the_kernel_cannot(monkeypatch, tmp_path):
    def cross_device(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device, raising=False)
    save_file(TENSORS, tmp_path / "model.safetensors")
    (tmp_path / "out").mkdir()
    with Checkpoint(tmp_path) as source:
        write_tensors(tmp_path / "out", "model", [copy_tensor(name, source) for name in source.infos], 10**6, "test")
    loaded = load_file(tmp_path / "out" / "model.safetensors")
    assert loaded.keys() == TENSORS.keys() and all(torch.equal(loaded[n], t) for n, t in TENSORS.items())


def test_a_failing_computation_over_a_seed_abandons_the_shard_with_its_own_error(tmp_path):
    save_file(TENSORS, tmp_path / "model.safetensors")
    (tmp_path / "out").mkdir()

    def fail(start, stop, into):
        raise ChatVectorError("the computation failed")

    with Checkpoint(tmp_path) as source:
        outputs = [OutputTensor(TensorSpec(n, i.dtype, i.shape), fail, seed_of(source, n), seed_is_result=n != "f.vector")
                   for n, i in source.infos.items()]
        with pytest.raises(ChatVectorError, match="the computation failed"):
            write_tensors(tmp_path / "out", "model", outputs, 10**6, "test")


def test_mapped_reads_are_views_of_the_file_and_outlive_the_checkpoint(tmp_path):
    tensors = {"a": torch.randn(64, 32).to(torch.bfloat16), "b": torch.randn(3, 3)}
    save_file(tensors, tmp_path / "model.safetensors")
    with Checkpoint(tmp_path) as checkpoint:
        rows = checkpoint.read("a", 10, 20)
        later = checkpoint.read("b")
    assert torch.equal(rows, tensors["a"][10:20]) and torch.equal(later, tensors["b"])  # still valid after close


def test_shards_follow_the_order_and_an_oversized_tensor_gets_its_own():
    specs = [TensorSpec(str(i), torch.float32, (n,)) for i, n in enumerate([10, 10, 100, 5])]
    assert [[s.name for s in group] for _, group in plan_shards(specs, 80, "m")] == [["0", "1"], ["2"], ["3"]]
    assert [f for f, _ in plan_shards(specs, 80, "m")] == [f"m-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert plan_shards(specs, 10**9, "m")[0][0] == "m.safetensors"


@pytest.mark.parametrize("text, value", [("5GB", 5 * 10**9), ("500MB", 5 * 10**8), ("2GiB", 2 * 2**30), ("1.5 gb", 15 * 10**8), (1000, 1000)])
def test_shard_sizes_parse_like_transformers(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["five", "-1GB", "0", "10XB"])
def test_bad_shard_sizes_are_refused(bad):
    with pytest.raises(ChatVectorError, match="--max_shard_size must be a size like 5GB"):
        parse_size(bad)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) - 10], "truncated or corrupt: tensor"),
    (lambda b: b[:5], "truncated or not a safetensors file"),
    (lambda b: b[:8] + b"{not json" + b[17:], "corrupt header"),
    (lambda b: (10**9).to_bytes(8, "little") + b[8:], "corrupt header"),
])
def test_corrupt_and_truncated_files_are_named_before_anything_is_read(damage, message, tmp_path):
    save_file(TENSORS, tmp_path / "model.safetensors")
    path = tmp_path / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ChatVectorError, match=message):
        Checkpoint(tmp_path)
