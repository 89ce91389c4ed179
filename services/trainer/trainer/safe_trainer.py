"""trl's SFTTrainer with pickle-free checkpoints (see checkpoint.SafeStateMixin)."""

from __future__ import annotations

from functools import cache

from .checkpoint import SafeStateMixin


@cache
def safe_sft_trainer() -> type:
    from transformers import Trainer
    from trl import SFTTrainer

    class SafeSFTTrainer(SafeStateMixin, SFTTrainer):
        # trl scores the LM head in tiles and adds entropy/accuracy metrics; without Triton its
        # torch fallback makes a dozen passes over (tokens x vocab) per step. On CPU the model's
        # own cross-entropy (one pass) is the same loss, faster (see the README's figures).
        plain_loss = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.plain_loss:
                inputs["use_cache"] = False  # as trl does: no KV cache while training
                return Trainer.compute_loss(
                    self, model, inputs, return_outputs, num_items_in_batch=num_items_in_batch
                )
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return SafeSFTTrainer
