"""evaluator

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "evaluator_evaluations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("evaluation_id", sa.String(length=36), nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=True),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("task_version", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("candidate_sha256", sa.String(length=64), nullable=False),
        sa.Column("candidate_kind", sa.String(length=16), nullable=False),
        sa.Column("quant_format", sa.String(length=16), nullable=True),
        sa.Column("golden_sha256", sa.String(length=64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("quality", sa.Float(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("failing_slices", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluator_evaluations")),
        sa.UniqueConstraint("evaluation_id", name=op.f("uq_evaluator_evaluations_evaluation_id")),
        sa.UniqueConstraint(
            "source_event_id", name=op.f("uq_evaluator_evaluations_source_event_id")
        ),
    )
    with op.batch_alter_table("evaluator_evaluations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evaluator_evaluations_cycle_id"), ["cycle_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_evaluator_evaluations_candidate_sha256"),
            ["candidate_sha256"],
            unique=False,
        )

    op.create_table(
        "evaluator_results",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("golden_sha256", sa.String(length=64), nullable=False),
        sa.Column("setup_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uri", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluator_results")),
        sa.UniqueConstraint(
            "model_key", "golden_sha256", "setup_sha256", name="uq_evaluator_results_key"
        ),
    )

    op.create_table(
        "evaluator_teacher_cache",
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_sha256", name=op.f("pk_evaluator_teacher_cache")),
    )


def downgrade() -> None:
    op.drop_table("evaluator_teacher_cache")
    op.drop_table("evaluator_results")
    with op.batch_alter_table("evaluator_evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluator_evaluations_candidate_sha256"))
        batch_op.drop_index(batch_op.f("ix_evaluator_evaluations_cycle_id"))

    op.drop_table("evaluator_evaluations")
