"""Extract and add against float64 ground truth, tensor by tensor, on every architecture."""
import threading

import numpy as np
import pytest
import torch

from chatvector import add, apply_chat_vectors, chat_vector, extract
from chatvector.merge import arithmetic
from chatvector.io.buffers import Workspace
from chatvector.merge.arithmetic import _accumulate_into, fusable, scaled_add_kernel, subtract_into, weighted_sum_into
from tests.conftest import ARCHS, assert_within_ulp, load_weights

ADDCMUL = torch.addcmul  # the real kernel, for a spy that counts its calls


def test_pure_functions_round_once_from_wide_accumulation():
    torch.manual_seed(0)
    base, chat, cp = (torch.randn(64, 33).to(torch.bfloat16) for _ in range(3))
    vector = chat_vector(base, chat)
    assert vector.dtype == torch.bfloat16
    assert_within_ulp(vector, chat.double() - base.double(), 0)  # one rounding of the exact difference
    merged = apply_chat_vectors(cp, [vector, vector], [0.3, 0.2], torch.float32)
    terms = [cp.double(), 0.3 * vector.double(), 0.2 * vector.double()]
    assert_within_ulp(merged, sum(terms), 1, magnitude=sum(t.abs() for t in terms))


@pytest.mark.parametrize("arch", ARCHS)
def test_extracted_vector_is_chat_minus_base_for_every_weight(arch, trios, vectors):
    base, chat = load_weights(trios[arch]["base"]), load_weights(trios[arch]["chat"])
    vector = load_weights(vectors[arch], "chat_vector")
    assert set(vector) == {n for n, t in chat.items() if t.is_floating_point()}
    for name, value in vector.items():
        assert value.dtype == chat[name].dtype, name  # --dtype auto keeps the chat model's dtype
        assert_within_ulp(value, chat[name].double() - base[name].double(), 0, name)


@pytest.mark.parametrize("ratio", [0.7, 0.5, 1.0])  # 0.7 takes the float32 route; 1.0 (and 0.5 in bfloat16) the fused kernel
@pytest.mark.parametrize("arch", ARCHS)
def test_added_model_is_cp_plus_ratio_times_vector_for_every_weight(arch, ratio, trios, vectors, tmp_path):
    out = add(str(trios[arch]["cp"]), [str(vectors[arch])], str(tmp_path / "out"), ratios=[ratio], device="cpu")
    cp, vector, merged = load_weights(trios[arch]["cp"]), load_weights(vectors[arch], "chat_vector"), load_weights(out)
    assert set(merged) == set(cp)
    for name, value in merged.items():
        assert value.dtype == cp[name].dtype, name
        if not value.is_floating_point():
            assert torch.equal(value, cp[name]), name
            continue
        terms = [cp[name].double(), ratio * vector[name].double()]
        assert_within_ulp(value, sum(terms), 1, name, magnitude=sum(t.abs() for t in terms))


@pytest.mark.parametrize("dtype, ratio", [(torch.bfloat16, 1.0), (torch.bfloat16, 0.5), (torch.bfloat16, -0.25), (torch.bfloat16, 2.0),
                                          (torch.float16, 1.0), (torch.float16, -1.0)])
def test_the_fused_kernel_and_the_float32_route_agree_bit_for_bit(dtype, ratio):
    generator = torch.Generator().manual_seed(1)
    cp, vector, base = ((scale * torch.randn(300, 517, generator=generator)).to(dtype) for scale in (0.02, 0.002, 0.02))
    assert fusable(dtype, cp, vector, ratio=ratio)
    fused, wide = torch.empty_like(cp), torch.empty_like(cp)
    weighted_sum_into(fused, cp, [vector], [ratio], Workspace(torch.device("cpu")))
    _accumulate_into(wide, cp, [vector], [ratio], Workspace(torch.device("cpu")))  # the general route, block by block
    assert torch.equal(fused, wide)
    subtract_into(fused, cp, base, Workspace(torch.device("cpu")))
    _accumulate_into(wide, cp, [base], [-1.0], Workspace(torch.device("cpu")))
    assert torch.equal(fused, wide)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("ratio", [0.3, -0.7, 0.1, 1.5])
def test_the_one_pass_scaled_add_and_the_float32_route_agree_bit_for_bit(dtype, ratio, monkeypatch):
    generator = torch.Generator().manual_seed(3)
    cp, vector = ((scale * torch.randn(1_000_003, generator=generator)).to(dtype) for scale in (0.02, 0.002))  # a ragged tail
    assert not fusable(dtype, cp, vector, ratio=ratio) and scaled_add_kernel(cp, cp, vector)
    calls = []
    monkeypatch.setattr(torch, "addcmul", lambda *a, **k: calls.append(1) or ADDCMUL(*a, **k))
    one_pass, wide = torch.empty_like(cp), torch.empty_like(cp)
    weighted_sum_into(one_pass, cp, [vector], [ratio], Workspace(torch.device("cpu")))
    assert calls  # the one-pass kernel ran
    _accumulate_into(wide, cp, [vector], [ratio], Workspace(torch.device("cpu")))
    assert torch.equal(one_pass, wide)
    # r * vector rounded to float32, then the sum, then one rounding (numpy: separate IEEE float32 operations)
    stepwise = np.float32(ratio) * vector.float().numpy() + cp.float().numpy()
    assert torch.equal(one_pass, torch.from_numpy(stepwise).to(dtype))
    terms = [cp.double(), ratio * vector.double()]
    assert_within_ulp(one_pass, sum(terms), 1, magnitude=sum(t.abs() for t in terms))
    with_zero = torch.empty_like(cp)  # a second vector at ratio 0 changes no bit
    weighted_sum_into(with_zero, cp, [vector, infinities_like(vector)], [ratio, 0.0], Workspace(torch.device("cpu")))
    assert torch.equal(with_zero, one_pass)


@pytest.mark.parametrize("dtype, term_dtype", [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
                                               (torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                                               (torch.bfloat16, torch.float64)])
def test_the_float32_route_scales_then_adds_each_term_with_its_own_rounding(dtype, term_dtype):
    """Several vectors: acc = cp widened; acc = acc + (r * term) per term, each step one IEEE rounding in the
    accumulator's type (numpy's separate operations here), then one rounding to the output, as the GPU's kernels do."""
    generator = torch.Generator().manual_seed(4)
    cp = (0.02 * torch.randn(100_003, generator=generator)).to(dtype)  # a ragged tail
    terms = [(scale * torch.randn(100_003, generator=generator, dtype=torch.float64)).to(term_dtype) for scale in (0.002, 0.003, 0.001)]
    ratios = [0.3, -0.7, 1.0]
    out = torch.empty_like(cp)
    _accumulate_into(out, cp, terms, ratios, Workspace(torch.device("cpu")))
    wide = np.float64 if dtype == torch.float32 else np.float32
    acc = cp.double().numpy().astype(wide)
    for term, ratio in zip(terms, ratios):
        acc = acc + wide(ratio) * term.double().numpy().astype(wide)  # a float64 term is rounded to float32 first
    assert torch.equal(out, torch.from_numpy(acc).to(dtype))


def infinities_like(tensor: torch.Tensor) -> torch.Tensor:
    return torch.full_like(tensor, float("inf"))  # at ratio 0 not even an infinity may leak in (0 * inf is nan)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_float32_route_gives_the_same_bits_whatever_its_blocks_and_threads(threads, monkeypatch):
    generator = torch.Generator().manual_seed(2)
    cp, first, second = ((scale * torch.randn(1000, 37, generator=generator)).to(torch.bfloat16) for scale in (0.02, 0.002, 0.003))
    whole = torch.empty_like(cp)
    _accumulate_into(whole, cp, [first, second], [0.3, -0.7], Workspace(torch.device("cpu")))  # 37,000 elements: one block
    monkeypatch.setattr(arithmetic, "BLOCK_NUMEL", 1000)  # blocks of 1000 per thread, the last one ragged
    kept = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        blocked = torch.empty_like(cp)
        _accumulate_into(blocked, cp, [first, second], [0.3, -0.7], Workspace(torch.device("cpu")))
    finally:
        torch.set_num_threads(kept)
    assert torch.equal(blocked, whole)
    terms = [cp.double(), 0.3 * first.double(), -0.7 * second.double()]
    assert_within_ulp(blocked, sum(terms), 1, magnitude=sum(t.abs() for t in terms))


def test_ratios_a_16_bit_kernel_would_round_take_the_float32_route():
    cp, vector = torch.ones(4, dtype=torch.bfloat16), torch.full((4,), 2.0**-9, dtype=torch.bfloat16)
    for ratio in (0.3, 0.75, 1.5, 0.0):  # torch would round alpha * vector to bfloat16 first
        assert not fusable(torch.bfloat16, cp, vector, ratio=ratio)
    assert not fusable(torch.float16, cp.half(), vector.half(), ratio=0.5)  # float16 subnormals would lose a bit
    assert not fusable(torch.float32, cp.float(), vector.float())  # float32 outputs accumulate in float64
    out = apply_chat_vectors(cp, [vector], [0.3])
    assert torch.equal(out, (cp.double() + 0.3 * vector.double()).to(torch.bfloat16))


def test_ratio_one_onto_the_base_reproduces_the_chat_model(trios, vectors, tmp_path):
    out = add(str(trios["qwen2"]["base"]), [str(vectors["qwen2"])], str(tmp_path / "out"), device="cpu")
    chat, merged = load_weights(trios["qwen2"]["chat"]), load_weights(out)
    for name, value in merged.items():
        torch.testing.assert_close(value, chat[name], rtol=0, atol=1e-7)


def test_ratio_zero_reproduces_the_cp_model_bit_for_bit(trios, vectors, tmp_path):
    out = add(str(trios["llama"]["cp"]), [str(vectors["llama"])], str(tmp_path / "out"), ratios=[0.0], device="cpu")
    cp, merged = load_weights(trios["llama"]["cp"]), load_weights(out)
    assert all(torch.equal(merged[n], cp[n]) for n in cp)


def test_two_vectors_are_summed_with_their_ratios(trios, vectors, tmp_path):
    llama = trios["llama"]
    second = extract(str(llama["base"]), str(llama["cp"]), str(tmp_path / "cv2"), dtype="float32", device="cpu")
    out = add(str(llama["cp"]), [str(vectors["llama"]), str(second)], str(tmp_path / "out"), ratios=[0.5, -0.25],
              dtype="float32", device="cpu")
    cp, v1, v2 = load_weights(llama["cp"]), load_weights(vectors["llama"], "chat_vector"), load_weights(second, "chat_vector")
    for name, value in load_weights(out).items():
        assert value.dtype == torch.float32
        terms = [cp[name].double(), 0.5 * v1[name].double(), -0.25 * v2[name].double()]
        assert_within_ulp(value, sum(terms), 1, name, magnitude=sum(t.abs() for t in terms))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_explicit_dtype_converts_every_float_weight_and_the_config(dtype, trios, vectors, tmp_path):
    import json

    out = add(str(trios["llama"]["cp"]), [str(vectors["llama"])], str(tmp_path / "out"), ratios=[0.5], dtype=dtype, device="cpu")
    cp, vector = load_weights(trios["llama"]["cp"]), load_weights(vectors["llama"], "chat_vector")
    for name, value in load_weights(out).items():
        assert value.dtype == getattr(torch, dtype)
        terms = [cp[name].double(), 0.5 * vector[name].double()]
        assert_within_ulp(value, sum(terms), 1, name, magnitude=sum(t.abs() for t in terms))
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype


def test_each_thread_has_its_own_workspace_buffers():
    """The stream's chunk workers compute side by side: a scratch block or output buffer is never shared."""
    workspace = Workspace(torch.device("cpu"))
    here = [workspace.get("acc", (8,), torch.float32), workspace.output((8,), torch.bfloat16), workspace.output((8,), torch.bfloat16)]
    there = []
    worker = threading.Thread(target=lambda: there.extend([workspace.get("acc", (8,), torch.float32), workspace.output((8,), torch.bfloat16)]))
    worker.start()
    worker.join()
    assert workspace.get("acc", (8,), torch.float32).data_ptr() == here[0].data_ptr()  # reused on its own thread
    assert here[1].data_ptr() != here[2].data_ptr()  # the two output buffers alternate
    assert not {t.data_ptr() for t in there} & {t.data_ptr() for t in here}


def test_the_ulp_oracle_rejects_two_ulps():
    truth = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    off = truth.to(torch.bfloat16).view(torch.int16) + torch.tensor([0, 2, 0], dtype=torch.int16)
    with pytest.raises(AssertionError, match="2 ulps"):
        assert_within_ulp(off.view(torch.bfloat16), truth, 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_rows_computed_over_seeds_make_the_same_bytes_as_computed_chunks(arch, trios, monkeypatch, tmp_path):
    """On the CPU a tensor's stored bytes are copied into the output and the rows computed over them: in place, through
    a writable map of the file, or (without room on the disk for that) written with write calls; without seeds the
    same rows are written into a fresh file. All three routes, fused and float32, must give the same files."""
    import chatvector.pipelines.add
    import chatvector.pipelines.extract
    from chatvector.io import stream

    trio, files, routes, threads = trios[arch], {}, [], set()
    compute_over_seed = stream._compute_over_seed
    monkeypatch.setattr(stream, "_compute_over_seed",
                        lambda *args: routes.append(args[-1]) or threads.add(threading.current_thread().name[:10]) or compute_over_seed(*args))
    monkeypatch.setattr(stream, "CHUNK_NUMEL", 256)  # many small chunks: the workers compute them side by side
    monkeypatch.setattr(stream, "arithmetic_threads", lambda outputs, head=None: 2)  # two workers, whatever the machine
    for route in ("in place", "write calls", "computed"):
        if route == "write calls":
            monkeypatch.setattr(stream, "room_to_write_in_place", lambda path, nbytes: False)
        if route == "computed":
            for module in (chatvector.pipelines.add, chatvector.pipelines.extract):
                monkeypatch.setattr(module, "seed_of", lambda source, name: None)
        vector = extract(str(trio["base"]), str(trio["chat"]), str(tmp_path / f"cv {route}"))
        merges = [add(str(trio["cp"]), [str(vector)], str(tmp_path / f"m{ratio} {route}"), ratios=[ratio], check_lineage=False)
                  for ratio in (0.3, 1.0)]
        skipped = add(str(trio["cp"]), [str(vector)], str(tmp_path / f"skip {route}"), skip_embed=True, special_tokens_map={6: 6})
        streamed = [p for d in (vector, *merges, skipped) for p in sorted(d.glob("*.safetensors")) if "fingerprint" not in p.name]
        files[route] = [p.read_bytes() for p in streamed]
        routes.append(route)
    in_place = routes.index("in place")
    assert in_place > 0 and set(routes[:in_place]) == {True}  # every chunk over a seed computed in the file
    assert set(routes[in_place + 1:-2]) == {False} and routes[-2:] == ["write calls", "computed"]  # none over a seed without seeds
    assert len(files["in place"]) == 5 and files["in place"] == files["write calls"] == files["computed"]
    assert threads == {"arithmetic", "MainThread"}  # in place on the workers, with write calls on the main thread


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs wherever one is present)")
@pytest.mark.parametrize("arch, ratio", [("llama", 0.5), ("llama", 0.3), ("gpt2", 1.0), ("gpt2", 0.3)])  # fused and float32 routes
def test_cuda_path_writes_the_same_bytes_as_the_cpu_path(arch, ratio, trios, tmp_path):
    trio = trios[arch]
    outputs = {}
    for device in ("cpu", "cuda"):
        vector = extract(str(trio["base"]), str(trio["chat"]), str(tmp_path / f"cv-{device}"), device=device)
        outputs[device] = (load_weights(vector, "chat_vector"), load_weights(add(
            str(trio["cp"]), [str(vector)], str(tmp_path / f"m-{device}"), ratios=[ratio], special_tokens_map={6: 6}, device=device)))
    for cpu, cuda in zip(outputs["cpu"], outputs["cuda"]):
        assert all(torch.equal(cpu[n], cuda[n]) for n in cpu)


def test_non_floating_tensors_are_left_out_of_the_vector_and_copied_from_the_cp(trios, tmp_path):
    import shutil

    from safetensors.torch import save_file

    copies = {}
    for role, source in trios["llama"].items():  # give every model an integer buffer with its own values
        copies[role] = tmp_path / role
        shutil.copytree(source, copies[role])
        state = load_weights(copies[role])
        state["model.position_ids"] = torch.arange(16, dtype=torch.int64) * (1 + list(trios["llama"]).index(role))
        save_file(state, copies[role] / "model.safetensors", metadata={"format": "pt"})
    vector = extract(str(copies["base"]), str(copies["chat"]), str(tmp_path / "cv"), device="cpu")
    assert "model.position_ids" not in load_weights(vector, "chat_vector")
    merged = load_weights(add(str(copies["cp"]), [str(vector)], str(tmp_path / "out"), ratios=[0.5], device="cpu"))
    assert torch.equal(merged["model.position_ids"], load_weights(copies["cp"])["model.position_ids"])
