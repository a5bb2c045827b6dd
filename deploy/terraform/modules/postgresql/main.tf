# Managed PostgreSQL: the lake's DuckLake catalog (database airduck_catalog); the marts and Airflow's metadata can
# live in the same cluster (create their databases with `psql` once it runs) or in a cluster of their own.

resource "nebius_msp_postgresql_v1alpha1_cluster" "this" {
  parent_id   = var.parent_id
  name        = "${var.name_prefix}-postgres"
  description = "airduck: lake catalog and marts"
  network_id  = var.network_id
  labels      = var.labels

  bootstrap = {
    db_name   = var.database
    user_name = var.user
  }

  config = {
    version       = var.postgres_version
    public_access = false
    template = {
      resources = {
        platform = var.platform
        preset   = var.preset
      }
      disk = {
        type           = "NETWORK_SSD"
        size_gibibytes = var.disk_gibibytes
      }
      hosts = {
        count = var.hosts
      }
    }
    pooler_config = {
      pooling_mode  = "SESSION"
      max_pool_size = var.max_pool_size
    }
  }

  backup = {
    backup_window_start = var.backup_window_start
    retention_policy    = var.backup_retention
  }

  # write-only: the password never enters the state; bump `password_version` to change it
  sensitive = {
    version = var.password_version
    bootstrap = {
      user_password = var.password
    }
  }
}
