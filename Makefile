SHELL := /bin/bash
PYTHON ?= python3
DEMO := demo_models

.PHONY: install demo test bench clean

# torch first: the local CPU wheel where no torch is installed; an existing (CUDA) torch is kept.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0 || $(PYTHON) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	@$(PYTHON) -m pip install -q -r requirements-dev.txt

demo: install
	@$(PYTHON) -m tests.tiny_models $(DEMO) >/dev/null
	@set -e; \
	run() { printf '+'; printf ' %q' "$$@"; echo; "$$@"; }; \
	run $(PYTHON) extract_chat_vector.py $(DEMO)/base $(DEMO)/chat $(DEMO)/chat_vector --overwrite True; \
	run $(PYTHON) add_chat_vector.py $(DEMO)/cp "['$(DEMO)/chat_vector']" $(DEMO)/cp_chat --ratio "[0.5]" --overwrite True; \
	run $(PYTHON) chat.py $(DEMO)/cp_chat --prompt "hello" --max_new_tokens 8

test: install
	$(PYTHON) -m pytest -q tests

bench: install
	$(PYTHON) bench/bench.py

clean:
	rm -rf $(DEMO) bench/cache bench/results .pytest_cache
