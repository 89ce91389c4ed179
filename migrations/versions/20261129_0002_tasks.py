"""task specs and base models registries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uri", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_models")),
        sa.UniqueConstraint("name", "sha256", name="uq_base_models_name_sha256"),
    )
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_base_models_name"), ["name"], unique=False)

    op.create_table(
        "task_specs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uri", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_specs")),
        sa.UniqueConstraint("name", "version", name="uq_task_specs_name_version"),
    )
    with op.batch_alter_table("task_specs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_specs_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_specs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_specs_name"))

    op.drop_table("task_specs")
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_base_models_name"))

    op.drop_table("base_models")
