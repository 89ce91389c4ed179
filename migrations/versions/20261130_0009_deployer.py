"""deployer

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-30 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deployer_deployments",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=True),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("task_version", sa.Integer(), nullable=False),
        sa.Column("task_spec", sa.JSON(), nullable=False),
        sa.Column("candidate", sa.JSON(), nullable=False),
        sa.Column("candidate_kind", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=128), nullable=True),
        sa.Column("engine", sa.String(length=16), nullable=True),
        sa.Column("base_url", sa.String(length=2048), nullable=True),
        sa.Column("served_model", sa.String(length=256), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployer_deployments")),
        sa.UniqueConstraint("deployment_id", name=op.f("uq_deployer_deployments_deployment_id")),
        sa.UniqueConstraint(
            "source_event_id", name=op.f("uq_deployer_deployments_source_event_id")
        ),
    )
    with op.batch_alter_table("deployer_deployments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deployer_deployments_cycle_id"), ["cycle_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deployer_deployments_task_name"), ["task_name"], unique=False
        )

    op.create_table(
        "deployer_api_keys",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployer_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_deployer_api_keys_key_id")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_deployer_api_keys_key_hash")),
    )


def downgrade() -> None:
    op.drop_table("deployer_api_keys")
    with op.batch_alter_table("deployer_deployments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployer_deployments_task_name"))
        batch_op.drop_index(batch_op.f("ix_deployer_deployments_cycle_id"))
    op.drop_table("deployer_deployments")
