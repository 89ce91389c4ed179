"""quantizer

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "quantizer_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=True),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("task_version", sa.BigInteger(), nullable=False),
        sa.Column("adapter_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("chosen", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("merged_model", sa.JSON(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quantizer_runs")),
        sa.UniqueConstraint("source_event_id", name=op.f("uq_quantizer_runs_source_event_id")),
    )
    with op.batch_alter_table("quantizer_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quantizer_runs_cycle_id"), ["cycle_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_quantizer_runs_adapter_sha256"), ["adapter_sha256"], unique=False
        )

    op.create_table(
        "quantizer_variants",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("engine", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("artifact", sa.JSON(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.Column("retention", sa.Float(), nullable=True),
        sa.Column("p95_ms", sa.Float(), nullable=True),
        sa.Column("cost_per_query_usd", sa.Float(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["quantizer_runs.id"],
            name=op.f("fk_quantizer_variants_run_id_quantizer_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quantizer_variants")),
    )
    with op.batch_alter_table("quantizer_variants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quantizer_variants_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quantizer_variants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quantizer_variants_run_id"))
    op.drop_table("quantizer_variants")
    with op.batch_alter_table("quantizer_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quantizer_runs_adapter_sha256"))
        batch_op.drop_index(batch_op.f("ix_quantizer_runs_cycle_id"))
    op.drop_table("quantizer_runs")
