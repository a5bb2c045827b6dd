output "lake_bucket" {
  description = "AIRDUCK_DATA_PATH=s3://<this>/data/"
  value       = module.object_storage.lake_bucket
}

output "landing_bucket" {
  description = "AIRDUCK_LANDING=s3://<this>/landing/"
  value       = module.object_storage.landing_bucket
}

output "s3_endpoint" {
  description = "AIRDUCK_S3_ENDPOINT"
  value       = "https://storage.${var.region}.nebius.cloud"
}

output "storage_access_key_id" {
  description = "AWS_ACCESS_KEY_ID (the secret is in MysteryBox: storage_secret_reference_id)"
  value       = module.object_storage.access_key_id
}

output "storage_secret_reference_id" {
  description = "MysteryBox secret holding AWS_SECRET_ACCESS_KEY"
  value       = module.object_storage.secret_reference_id
}

output "postgres_host" {
  description = "Host of AIRDUCK_CATALOG and MARTS_DSN"
  value       = module.postgresql.host
}

output "kubernetes_cluster_id" {
  description = "nebius mk8s cluster get-credentials --id <this> --external"
  value       = module.kubernetes.cluster_id
}

output "image_prefix" {
  description = "Push the airduck image to <this>/airduck:<tag>"
  value       = module.registry.image_prefix
}
