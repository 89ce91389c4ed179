"""Task specs: what the task is, how good the student must be, and where data may go."""

from shared.tasks.load import TaskSpecError, load_spec, parse_spec, spec_from_json
from shared.tasks.spec import Example, TaskSpec, Teacher, Thresholds, UseCase

__all__ = [
    "Example",
    "TaskSpec",
    "TaskSpecError",
    "Teacher",
    "Thresholds",
    "UseCase",
    "load_spec",
    "parse_spec",
    "spec_from_json",
]
