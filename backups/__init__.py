"""trustops.backups: Postgres backups streamed to S3 (SSE-S3), their retention and restore drills
(`trustops-pgbackup`, run on the db host as postgres)."""
