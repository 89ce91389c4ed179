"""synth data: registered tasks, teacher response cache and ledger, runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "synth_data_tasks",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("uri", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_synth_data_tasks")),
        sa.UniqueConstraint("name", "version", name="uq_synth_data_tasks_name_version"),
    )
    with op.batch_alter_table("synth_data_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_synth_data_tasks_name"), ["name"], unique=False)

    op.create_table(
        "synth_data_responses",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_synth_data_responses")),
    )
    with op.batch_alter_table("synth_data_responses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_synth_data_responses_cycle_id"), ["cycle_id"], unique=False
        )

    op.create_table(
        "synth_data_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("task_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("batch_uri", sa.String(length=1000), nullable=True),
        sa.Column("batch_sha256", sa.String(length=64), nullable=True),
        sa.Column("batch_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("rejected_uri", sa.String(length=1000), nullable=True),
        sa.Column("rejected_sha256", sa.String(length=64), nullable=True),
        sa.Column("rejected_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stats", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_synth_data_runs")),
        sa.UniqueConstraint("cycle_id", "iteration", name="uq_synth_data_runs_cycle_iteration"),
    )
    with op.batch_alter_table("synth_data_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_synth_data_runs_task_name"), ["task_name"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("synth_data_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_synth_data_runs_task_name"))

    op.drop_table("synth_data_runs")
    with op.batch_alter_table("synth_data_responses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_synth_data_responses_cycle_id"))

    op.drop_table("synth_data_responses")
    with op.batch_alter_table("synth_data_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_synth_data_tasks_name"))

    op.drop_table("synth_data_tasks")
