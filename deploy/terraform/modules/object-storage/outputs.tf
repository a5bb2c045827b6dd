output "lake_bucket" {
  description = "Name of the bucket of DuckLake's data files (AIRDUCK_DATA_PATH=s3://<this>/data/)."
  value       = nebius_storage_v1_bucket.lake.name
}

output "landing_bucket" {
  description = "Name of the landing bucket (AIRDUCK_LANDING=s3://<this>/landing/)."
  value       = nebius_storage_v1_bucket.landing.name
}

output "access_key_id" {
  description = "AWS_ACCESS_KEY_ID of the storage service account."
  value       = nebius_iam_v2_access_key.storage.status.aws_access_key_id
}

output "secret_reference_id" {
  description = "The MysteryBox secret that holds AWS_SECRET_ACCESS_KEY (copy it into the SOPS-encrypted Secret)."
  value       = nebius_iam_v2_access_key.storage.status.secret_reference_id
}
