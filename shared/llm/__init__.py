"""The one LLM client: residency (spec AND operator allow-lists), no redirects, a concurrency
gate per endpoint, counted retries honouring Retry-After, and a cost ledger.

Names load on first use: `shared.settings` imports `shared.llm.hosts` at start-up, and must not
pay for the openai SDK (~1.5 s) in every process that reads settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Completion, LLMClient, check_residency
    from .errors import (
        EndpointUnusable,
        RedirectRefused,
        RequestRefused,
        ResidencyError,
        RetriesExhausted,
    )
    from .hosts import (
        PLATFORM_SETTING,
        AllowList,
        HostEntry,
        Target,
        normalise_host,
        operator_list,
        parse_entry,
        parse_host_list,
        refusal,
        spec_list,
        target_of,
    )
    from .ledger import Ledger, cost_usd
    from .policy import Gate, RetryPolicy, gate_for, retry_after_s

_WHERE = {
    "client": ["Completion", "LLMClient", "check_residency"],
    "errors": [
        "EndpointUnusable",
        "RedirectRefused",
        "RequestRefused",
        "ResidencyError",
        "RetriesExhausted",
    ],
    "hosts": [
        "PLATFORM_SETTING",
        "AllowList",
        "HostEntry",
        "Target",
        "normalise_host",
        "operator_list",
        "parse_entry",
        "parse_host_list",
        "refusal",
        "spec_list",
        "target_of",
    ],
    "ledger": ["Ledger", "cost_usd"],
    "policy": ["Gate", "RetryPolicy", "gate_for", "retry_after_s"],
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = [
    "PLATFORM_SETTING",
    "AllowList",
    "Completion",
    "EndpointUnusable",
    "Gate",
    "HostEntry",
    "LLMClient",
    "Ledger",
    "RedirectRefused",
    "RequestRefused",
    "ResidencyError",
    "RetriesExhausted",
    "RetryPolicy",
    "Target",
    "check_residency",
    "cost_usd",
    "gate_for",
    "normalise_host",
    "operator_list",
    "parse_entry",
    "parse_host_list",
    "refusal",
    "retry_after_s",
    "spec_list",
    "target_of",
]


def __getattr__(name: str) -> Any:
    module = _MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
