#!/bin/sh
# Creates the artifact bucket and the services' own MinIO user with read-write access.
# Idempotent. Run by compose.yaml (minio-init) and by the minio-setup Job in deploy/base.
# Needs: MINIO_URL, MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, DISTILLERY_S3_BUCKET,
#        DISTILLERY_S3_ACCESS_KEY, DISTILLERY_S3_SECRET_KEY (must differ from the root user).
set -eu

until mc alias set distillery "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  echo "waiting for MinIO at $MINIO_URL"
  sleep 2
done

mc mb --ignore-existing "distillery/$DISTILLERY_S3_BUCKET"
mc admin user add distillery "$DISTILLERY_S3_ACCESS_KEY" "$DISTILLERY_S3_SECRET_KEY"
# `attach` fails when the policy is already attached; only that case is let through.
if ! mc admin policy attach distillery readwrite --user "$DISTILLERY_S3_ACCESS_KEY"; then
  mc admin user info distillery "$DISTILLERY_S3_ACCESS_KEY" | grep -q readwrite
fi
echo "bucket $DISTILLERY_S3_BUCKET and user $DISTILLERY_S3_ACCESS_KEY ready"
