"""feedback-collector: the task spec each drift reference's dataset applied; relabel requests

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("feedback_collector_references", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_spec", sa.JSON(), nullable=True))
    op.create_table(
        "feedback_collector_relabels",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("feedback_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asked_by", sa.String(length=36), nullable=True),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_collector_relabels")),
        sa.UniqueConstraint("request_id", name=op.f("uq_feedback_collector_relabels_request_id")),
    )
    op.create_index(
        op.f("ix_feedback_collector_relabels_task_name"),
        "feedback_collector_relabels",
        ["task_name"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_feedback_collector_relabels_task_name"), table_name="feedback_collector_relabels"
    )
    op.drop_table("feedback_collector_relabels")
    with op.batch_alter_table("feedback_collector_references", schema=None) as batch_op:
        batch_op.drop_column("task_spec")
