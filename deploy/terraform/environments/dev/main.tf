# The dev environment: object storage, managed PostgreSQL, managed Kubernetes and the container registry.

locals {
  name_prefix = "${var.name_prefix}-dev"
  labels      = merge(var.labels, { environment = "dev", app = "airduck" })
}

module "object_storage" {
  source = "../../modules/object-storage"

  parent_id               = var.parent_id
  name_prefix             = local.name_prefix
  editors_group_id        = var.editors_group_id
  landing_noncurrent_days = 7
  landing_expire_days     = 30
  labels                  = local.labels
}

module "postgresql" {
  source = "../../modules/postgresql"

  parent_id        = var.parent_id
  name_prefix      = local.name_prefix
  network_id       = var.network_id
  password         = var.postgres_password
  password_version = var.postgres_password_version
  preset           = "2vcpu-8gb"
  disk_gibibytes   = 32
  hosts            = 1
  labels           = local.labels
}

module "kubernetes" {
  source = "../../modules/kubernetes"

  parent_id               = var.parent_id
  name_prefix             = local.name_prefix
  subnet_id               = var.subnet_id
  kubernetes_version      = var.kubernetes_version
  etcd_cluster_size       = 1
  api_allowed_cidrs       = var.api_allowed_cidrs
  node_service_account_id = var.node_service_account_id
  labels                  = local.labels
  node_groups = {
    system = {
      platform  = "cpu-e2"
      preset    = "4vcpu-16gb"
      min_nodes = 1
      max_nodes = 2
    }
    steps = {
      platform       = "cpu-e2"
      preset         = "8vcpu-32gb"
      min_nodes      = 0
      max_nodes      = 3
      disk_gibibytes = 128
      labels         = { "airduck.io/workload" = "steps" }
      taints         = [{ key = "airduck.io/steps", value = "true", effect = "NO_SCHEDULE" }]
    }
  }
}

module "registry" {
  source = "../../modules/registry"

  parent_id   = var.parent_id
  name_prefix = local.name_prefix
  region      = var.region
  labels      = local.labels
}
