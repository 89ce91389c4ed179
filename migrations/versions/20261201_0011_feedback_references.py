"""feedback-collector: input drift's reference dataset per task; each cycle's newest example

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback_collector_references",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("dataset_version", sa.String(length=128), nullable=False),
        sa.Column("train", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_references")),
        sa.UniqueConstraint("task_name", name=op.f("uq_feedback_collector_references_task_name")),
    )
    with op.batch_alter_table("feedback_collector_cycles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("examples_upto", _ID, server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("feedback_collector_cycles", schema=None) as batch_op:
        batch_op.drop_column("examples_upto")
    op.drop_table("feedback_collector_references")
