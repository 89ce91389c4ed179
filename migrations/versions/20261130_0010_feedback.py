"""feedback-collector

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback_collector_cycles",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_cycles")),
        sa.UniqueConstraint("cycle_id", name=op.f("uq_feedback_collector_cycles_cycle_id")),
        sa.UniqueConstraint("trigger", name=op.f("uq_feedback_collector_cycles_trigger")),
    )
    with op.batch_alter_table("feedback_collector_cycles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_collector_cycles_task_name"), ["task_name"], unique=False
        )

    op.create_table(
        "feedback_collector_examples",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("example_id", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("chosen", sa.Text(), nullable=False),
        sa.Column("rejected", sa.Text(), nullable=True),
        sa.Column("trust", sa.String(length=16), nullable=False),
        sa.Column("request_ids", sa.JSON(), nullable=False),
        sa.Column("feedback_ids", sa.JSON(), nullable=False),
        sa.Column("pii", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_examples")),
        sa.UniqueConstraint("example_id", name=op.f("uq_feedback_collector_examples_example_id")),
    )
    with op.batch_alter_table("feedback_collector_examples", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_collector_examples_task_name"), ["task_name"], unique=False
        )

    op.create_table(
        "feedback_collector_feedback",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("escalate", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_feedback")),
        sa.UniqueConstraint("event_id", name=op.f("uq_feedback_collector_feedback_event_id")),
    )
    with op.batch_alter_table("feedback_collector_feedback", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_collector_feedback_matched_at"), ["matched_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_feedback_collector_feedback_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_feedback_collector_feedback_task_name"), ["task_name"], unique=False
        )

    op.create_table(
        "feedback_collector_rejections",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("feedback_event_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_rejections")),
        sa.UniqueConstraint(
            "feedback_event_id", name=op.f("uq_feedback_collector_rejections_feedback_event_id")
        ),
    )
    with op.batch_alter_table("feedback_collector_rejections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_collector_rejections_task_name"), ["task_name"], unique=False
        )

    op.create_table(
        "feedback_collector_rollouts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("traffic_share", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_rollouts")),
        sa.UniqueConstraint(
            "deployment_id", name=op.f("uq_feedback_collector_rollouts_deployment_id")
        ),
    )
    op.create_table(
        "feedback_collector_traces",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=True),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("prompt_source", sa.String(length=8), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_traces")),
        sa.UniqueConstraint("event_id", name=op.f("uq_feedback_collector_traces_event_id")),
    )
    with op.batch_alter_table("feedback_collector_traces", schema=None) as batch_op:
        batch_op.create_index(
            "ix_feedback_collector_traces_occurred_at", ["occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_feedback_collector_traces_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            "ix_feedback_collector_traces_task_time", ["task_name", "occurred_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("feedback_collector_traces", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_collector_traces_task_time")
        batch_op.drop_index(batch_op.f("ix_feedback_collector_traces_request_id"))
        batch_op.drop_index("ix_feedback_collector_traces_occurred_at")

    op.drop_table("feedback_collector_traces")
    op.drop_table("feedback_collector_rollouts")
    with op.batch_alter_table("feedback_collector_rejections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_collector_rejections_task_name"))

    op.drop_table("feedback_collector_rejections")
    with op.batch_alter_table("feedback_collector_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_collector_feedback_task_name"))
        batch_op.drop_index(batch_op.f("ix_feedback_collector_feedback_request_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_collector_feedback_matched_at"))

    op.drop_table("feedback_collector_feedback")
    with op.batch_alter_table("feedback_collector_examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_collector_examples_task_name"))

    op.drop_table("feedback_collector_examples")
    with op.batch_alter_table("feedback_collector_cycles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_collector_cycles_task_name"))

    op.drop_table("feedback_collector_cycles")
