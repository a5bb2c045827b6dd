# The container registry for the airduck image (deploy/docker/Dockerfile) and the Airflow image.

resource "nebius_registry_v1_registry" "this" {
  parent_id   = var.parent_id
  name        = "${var.name_prefix}-images"
  description = "airduck and Airflow images"
  labels      = var.labels
}
