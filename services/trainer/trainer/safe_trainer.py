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
from .data import IGNORE_INDEX, GroupedSampler, is_text_row


def _labelled(model: Any, inputs: dict[str, Any]):
    """The forward with logits only where some row carries a label: (inputs without labels,
    kept positions, the targets there, outputs, float logits). In a padded batch the kept
    positions are the union of the rows' labelled positions; in a packed row (batch of one)
    exactly the labelled ones."""
    inputs = dict(inputs)
    targets = inputs.pop("labels")[:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    # No KV cache: with one, transformers skips the block-diagonal mask it builds from the
    # position_ids of a packed row, and the examples in that row would attend to each other.
    outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
    return inputs, keep, targets[:, keep], outputs, outputs.logits.float()


def _cross_entropy_sum(logits: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def _per_label(total: Any, picked: Any, num_items_in_batch: Any) -> Any:
    count = num_items_in_batch if num_items_in_batch is not None else (picked != IGNORE_INDEX).sum()
    return total / max(count, 1)  # max: a batch with no label scores 0, not NaN


def assistant_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None):
    """(loss, outputs): cross-entropy of the labelled tokens, logits computed only there.

    The same loss as the model's own (labels shifted by one, mean over labelled tokens, or a
    sum over `num_items_in_batch` when the Trainer counts labels across accumulation steps).
    """
    _, _, picked, outputs, logits = _labelled(model, inputs)
    return _per_label(_cross_entropy_sum(logits, picked), picked, num_items_in_batch), outputs


def replay_kl_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None):
    """(loss, outputs): `assistant_loss` for chat rows, KL(base || student) summed over every
    labelled position of the plain-text rows (`data.is_text_row`); one normaliser for both, so
    a text row's position weighs what a chat row's labelled token weighs. `model` is a peft
    model: the base is the same forward with the adapter disabled, without gradients."""
    import torch

    text = is_text_row(inputs["labels"])
    if not bool(text.any()):
        return assistant_loss(model, inputs, num_items_in_batch)
    only_text = bool(text.all())
    inputs, keep, picked, outputs, logits = _labelled(model, inputs)
    if only_text:
        total = logits.new_zeros(())
    else:
        total = _cross_entropy_sum(logits, picked.masked_fill(text[:, None], IGNORE_INDEX))
    text_inputs = {k: v[text] if torch.is_tensor(v) and v.shape[:1] == text.shape else v
                   for k, v in inputs.items()}  # fmt: skip
    with torch.no_grad(), model.disable_adapter():
        base = model(**text_inputs, use_cache=False, logits_to_keep=keep).logits.float()
        p = torch.softmax(base, dim=-1)
        neg_entropy = (p * base).sum(-1) - torch.logsumexp(base, dim=-1)
        del base
    # KL(p || softmax(s)) = logsumexp(s) - <p, s> - H(p): two passes over the vocabulary and
    # a gradient of softmax(s) - p, where log_softmax and kl_div take several (measured on
    # Gemma's 262k vocabulary: 18 s against 35 s for a batch of 8 x 156 tokens).
    student = logits if only_text else logits[text]
    kl = torch.logsumexp(student, dim=-1) - (p * student).sum(-1) + neg_entropy
    total = total + (kl * (picked[text] != IGNORE_INDEX)).sum()
    return _per_label(total, picked, num_items_in_batch), outputs


@cache
def safe_sft_trainer() -> type:
    from trl import SFTTrainer

    class SafeSFTTrainer(SafeStateMixin, SFTTrainer):
        plain_loss = False
        # Set: batches of similar length, in an order drawn from this seed and the epoch.
        group_seed: int | None = None
        text_kl = False  # plain-text replay rows under replay_kl_loss (padded batches only)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.plain_loss:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.text_kl and model.training:
                peft_model = self.accelerator.unwrap_model(model)
                loss, outputs = replay_kl_loss(peft_model, inputs, num_items_in_batch)
            else:
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
