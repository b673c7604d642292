# Set-up is part of every target: the first run creates .venv/ and installs into it.
# torch is pinned to the build that ships with torchvision on this project's machines
# (transformers' InternVLProcessor imports torchvision); pip takes both from local disk there.
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)          ## the main job on the embedded default: the R1V recipe on the mini-world
	$(VENV)/bin/r1v world build      # problems drawn, shipped backbones copied (reused when built)
	$(VENV)/bin/r1v world data       # the recipe's files, D by AL-CoTD (reused when made)
	$(VENV)/bin/r1v recipe run recipes/tiny.yaml

test: $(STAMP)          ## the test suite (CI runs this)
	$(PY) -m pytest -q

test-slow: $(STAMP)     ## the slow tests only
	$(PY) -m pytest -q -m slow

bench: $(STAMP)         ## speed benchmarks, each printed beside its baseline
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/align.py
	$(PY) bench/scale.py
	$(PY) bench/grpo.py
	$(PY) bench/chat_speed.py
	$(PY) bench/tiling_speed.py
	$(PY) bench/serve.py
	$(PY) bench/convert_memory.py
	$(PY) bench/scoring_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
