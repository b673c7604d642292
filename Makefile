# Set-up is part of every target: the first run creates .venv/ and installs into it.
# torch is pinned to the build that ships with torchvision on this project's machines
# (transformers' InternVLProcessor imports torchvision); pip takes both from local disk there.
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed
# the tests' extras (pytest, playwright, TRL) come only with the test targets: the demo's set-up is
# part of its 15-minute budget, and they take it ~20 s
TESTED := $(VENV)/.installed-test

.PHONY: demo demo-r1v2 claims r1v2-ablation test test-slow bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

$(TESTED): $(STAMP)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)          ## the main job on the embedded default: the R1V recipe on the mini-world
	$(VENV)/bin/r1v world build      # problems drawn, shipped backbones copied (reused when built)
	$(VENV)/bin/r1v world data       # the recipe's files, D by AL-CoTD (reused when made)
	$(VENV)/bin/r1v recipe run recipes/tiny.yaml

# The paper's claims over seeds (README, "What the mini-world run gives", five: `make claims SEEDS="1 2 3 4"`): make
# demo's run is seed 0; the SEEDS (1 and 2 unless set) run the same recipe; `r1v world compare` measures
# AL-CoTD against no length penalty (P = 1, the arm the claims table reads) on each; then the claims table over
# them all. About an hour after `make demo` for two seeds on a 2-core AMD EPYC (each seed:
# a run ~11 min, a compare ~12); every step skips what is already finished, so an interrupted run resumes.
SEEDS ?= 1 2
CMP   := $(VENV)/bin/r1v world compare --config recipes/tiny.yaml --fixed 1.0
claims: demo            ## the paper's claims over seed 0 and SEEDS, each run, pooled and over the runs (runs/claims/)
	set -e; for s in $(SEEDS); do $(VENV)/bin/r1v recipe run recipes/tiny.yaml seed=$$s name=tiny-s$$s; done
	$(CMP)
	set -e; for s in $(SEEDS); do $(CMP) seed=$$s name=tiny-s$$s; done
	$(VENV)/bin/r1v recipe claims runs/tiny $(addprefix runs/tiny-s,$(SEEDS)) --out runs/claims

demo-r1v2: $(STAMP)     ## the second main job: R1V2's recipe (rm, MPO, hybrid GRPO with SSB) on the mini-world
	$(VENV)/bin/r1v world build
	$(VENV)/bin/r1v world data
	$(VENV)/bin/r1v recipe run recipes/r1v2-tiny.yaml

# R1V2's GRPO ablation (docs/mini-world-r1v2.md): from demo-r1v2's MPO policy, the rule-only baseline, the Selective Sample
# Buffer and the reward-model term, alone and together, then the runs side by side.
ABLATE := grpo.base=runs/r1v2-tiny/mpo/r4 grpo.filter_pool=false
r1v2-ablation: demo-r1v2
	$(VENV)/bin/r1v train grpo --config recipes/r1v2-tiny.yaml name=r1v2-tiny-rules $(ABLATE) grpo.reward_model=none grpo.ssb.enabled=false
	$(VENV)/bin/r1v train grpo --config recipes/r1v2-tiny.yaml name=r1v2-tiny-rules-ssb $(ABLATE) grpo.reward_model=none
	$(VENV)/bin/r1v train grpo --config recipes/r1v2-tiny.yaml name=r1v2-tiny-rm $(ABLATE) grpo.reward_model=runs/r1v2-tiny/rm grpo.ssb.enabled=false
	$(VENV)/bin/r1v train grpo --config recipes/r1v2-tiny.yaml name=r1v2-tiny-rm-ssb $(ABLATE) grpo.reward_model=runs/r1v2-tiny/rm
	$(VENV)/bin/r1v recipe compare runs/r1v2-tiny-rules runs/r1v2-tiny-rules-ssb runs/r1v2-tiny-rm runs/r1v2-tiny-rm-ssb runs/r1v2-tiny --out runs/r1v2-ablation

test: $(TESTED)         ## the test suite (CI runs this)
	$(PY) -m pytest -q

test-slow: $(TESTED)    ## the slow tests only
	$(PY) -m pytest -q -m slow

bench: $(STAMP)         ## speed benchmarks, each printed beside its baseline
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/align.py
	$(PY) bench/scale.py
	$(PY) -m pip install -q --no-deps --target $(VENV)/trl-1.0 trl==1.0.0
	$(PY) bench/grpo.py --trl-replay $(VENV)/trl-1.0
	$(PY) bench/chat_speed.py
	$(PY) bench/tiling_speed.py
	$(PY) bench/serve.py
	$(PY) bench/convert_memory.py
	$(PY) bench/logprobs_memory.py
	$(PY) bench/scoring_speed.py
	$(PY) bench/critical_choice.py

clean:
	rm -rf $(VENV) runs .pytest_cache
