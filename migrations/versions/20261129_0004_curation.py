"""curation: runs, review queue, rejections, published datasets

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "curation_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.Column("source_kind", sa.String(length=20), nullable=False),
        sa.Column("source_event", sa.Text(), nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("task_version", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("draft_uri", sa.String(length=1000), nullable=False),
        sa.Column("draft_sha256", sa.String(length=64), nullable=False),
        sa.Column("draft_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_runs")),
        sa.UniqueConstraint("source_event_id", name=op.f("uq_curation_runs_source_event_id")),
    )
    with op.batch_alter_table("curation_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_curation_runs_cycle_id"), ["cycle_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_curation_runs_task_name"), ["task_name"], unique=False)

    op.create_table(
        "curation_reviews",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("row_id", sa.String(length=100), nullable=False),
        sa.Column("use_case", sa.String(length=64), nullable=False),
        sa.Column("negative", sa.Boolean(), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("edited_output", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["curation_runs.id"],
            name=op.f("fk_curation_reviews_run_id_curation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_reviews")),
        sa.UniqueConstraint("run_id", "row_id", name="uq_curation_reviews_run_row"),
    )
    with op.batch_alter_table("curation_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_curation_reviews_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_curation_reviews_status"), ["status"], unique=False)

    op.create_table(
        "curation_rejections",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("dataset_version", sa.String(length=64), nullable=True),
        sa.Column("row_id", sa.String(length=100), nullable=False),
        sa.Column("use_case", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["curation_runs.id"],
            name=op.f("fk_curation_rejections_run_id_curation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_rejections")),
    )
    with op.batch_alter_table("curation_rejections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_curation_rejections_dataset_version"), ["dataset_version"], unique=False
        )
        batch_op.create_index(
            "ix_curation_rejections_run_reason", ["run_id", "reason"], unique=False
        )

    op.create_table(
        "curation_datasets",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("dataset_version", sa.String(length=64), nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("task_version", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("manifest_uri", sa.String(length=1000), nullable=False),
        sa.Column("manifest_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("train_examples", sa.Integer(), nullable=False),
        sa.Column("validation_examples", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["curation_runs.id"],
            name=op.f("fk_curation_datasets_run_id_curation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_datasets")),
        sa.UniqueConstraint("run_id", name=op.f("uq_curation_datasets_run_id")),
    )
    with op.batch_alter_table("curation_datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_curation_datasets_cycle_id"), ["cycle_id"])
        batch_op.create_index(
            batch_op.f("ix_curation_datasets_dataset_version"), ["dataset_version"]
        )
        batch_op.create_index(batch_op.f("ix_curation_datasets_task_name"), ["task_name"])


def downgrade() -> None:
    with op.batch_alter_table("curation_datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_curation_datasets_task_name"))
        batch_op.drop_index(batch_op.f("ix_curation_datasets_dataset_version"))
        batch_op.drop_index(batch_op.f("ix_curation_datasets_cycle_id"))
    op.drop_table("curation_datasets")

    with op.batch_alter_table("curation_rejections", schema=None) as batch_op:
        batch_op.drop_index("ix_curation_rejections_run_reason")
        batch_op.drop_index(batch_op.f("ix_curation_rejections_dataset_version"))
    op.drop_table("curation_rejections")

    with op.batch_alter_table("curation_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_curation_reviews_status"))
        batch_op.drop_index(batch_op.f("ix_curation_reviews_run_id"))
    op.drop_table("curation_reviews")

    with op.batch_alter_table("curation_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_curation_runs_task_name"))
        batch_op.drop_index(batch_op.f("ix_curation_runs_cycle_id"))
    op.drop_table("curation_runs")
