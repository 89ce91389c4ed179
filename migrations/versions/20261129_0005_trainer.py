"""trainer

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trainer_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=True),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("task_version", sa.Integer(), nullable=False),
        sa.Column("dataset_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("base_model_sha256", sa.String(length=64), nullable=True),
        sa.Column("adapter_sha256", sa.String(length=64), nullable=True),
        sa.Column("adapter", sa.Text(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("hyperparameters", sa.Text(), nullable=True),
        sa.Column("validation_loss", sa.Float(), nullable=True),
        sa.Column("best_trial", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trainer_runs")),
        sa.UniqueConstraint("run_id", name=op.f("uq_trainer_runs_run_id")),
    )
    with op.batch_alter_table("trainer_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trainer_runs_cycle_id"), ["cycle_id"], unique=False)

    op.create_table(
        "trainer_trials",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("validation_loss", sa.Float(), nullable=True),
        sa.Column("checkpoint_step", sa.Integer(), nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("adapter", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trainer_trials")),
        sa.UniqueConstraint("run_id", "number", name="uq_trainer_trials_run_number"),
    )
    with op.batch_alter_table("trainer_trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trainer_trials_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trainer_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trainer_trials_run_id"))

    op.drop_table("trainer_trials")
    with op.batch_alter_table("trainer_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trainer_runs_cycle_id"))

    op.drop_table("trainer_runs")
