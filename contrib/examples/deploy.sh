#!/bin/sh
# deploy.sh - a plain deploy: a base backup and a restore point, then the migration, then the app.
#
# migrate-safe runs the migration only when the backup and the restore point succeeded, exits with
# the migration's exit status, and prints on stderr the restore command that returns to the moment
# before it. The connection string has no password: use ~/.pgpass or PGPASSFILE.
set -eu

WALVAULT_CONFIG=${WALVAULT_CONFIG:-/etc/walvault/walvault.conf}
export WALVAULT_CONFIG
DB=${DB:-"host=db.internal user=walvault dbname=app"}

basebackup migrate-safe --backup --label "pre-deploy-${DEPLOY_ID:-manual}" -d "$DB" -- \
    npx prisma migrate deploy

systemctl restart app.service
