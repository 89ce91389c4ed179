"""trl's SFTTrainer with pickle-free checkpoints (see checkpoint.SafeStateMixin), the CPU loss
path and batches grouped by length.

The CPU loss path (`plain_loss`): trl scores the LM head in tiles and adds entropy/accuracy
metrics; without Triton its torch fallback makes a dozen passes over (tokens x vocab) per step.
The model's own cross-entropy is the same loss in one pass, and `assistant_loss` below goes one
further: logits only at the positions that carry a label. With the student's short prompt
about a fifth of a row is the answer, so four fifths of the LM head (a fifth of SmolLM2's
compute) and of the vocabulary-wide loss tensors are never built.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .checkpoint import SafeStateMixin
from .data import IGNORE_INDEX, GroupedSampler


def assistant_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None):
    """(loss, outputs): cross-entropy of the labelled tokens, logits computed only there.

    The same loss as the model's own (labels shifted by one, mean over labelled tokens, or a
    sum over `num_items_in_batch` when the Trainer counts labels across accumulation steps).
    In a padded batch the kept positions are the union of the rows' labelled positions; in a
    packed row (batch of one) exactly the labelled ones.
    """
    import torch.nn.functional as F

    inputs = dict(inputs)
    targets = inputs.pop("labels")[:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    # No KV cache: with one, transformers skips the block-diagonal mask it builds from the
    # position_ids of a packed row, and the examples in that row would attend to each other.
    outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
    logits = outputs.logits.float()
    picked = targets[:, keep]
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        picked.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = num_items_in_batch if num_items_in_batch is not None else (picked != IGNORE_INDEX).sum()
    return total / max(count, 1), outputs  # max: a batch with no label scores 0, not NaN


@cache
def safe_sft_trainer() -> type:
    from trl import SFTTrainer

    class SafeSFTTrainer(SafeStateMixin, SFTTrainer):
        plain_loss = False
        # Set: batches of similar length, in an order drawn from this seed and the epoch.
        group_seed: int | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.plain_loss:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, outputs = assistant_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # As the HF Trainer does: the count is summed over processes, DDP averages.
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.group_seed is None or dataset is None:
                return super()._get_train_sampler(train_dataset)
            lengths = [len(ids) for ids in dataset["input_ids"]]
            return GroupedSampler(lengths, self.args.per_device_train_batch_size, self.group_seed)

        def _track_num_input_tokens(self, inputs):
            # A packed row has no attention mask, and the Trainer would then count the tokens
            # that differ from the pad token: SmolLM2 pads with its end-of-turn token, so every
            # turn's last token would go uncounted. A packed row has no padding at all.
            if "attention_mask" in inputs or "position_ids" not in inputs:
                return super()._track_num_input_tokens(inputs)
            import torch

            tokens = torch.as_tensor(inputs["input_ids"].numel(), device=self.args.device)
            self.state.num_input_tokens_seen += int(self.accelerator.gather(tokens).sum().item())

    return SafeSFTTrainer
