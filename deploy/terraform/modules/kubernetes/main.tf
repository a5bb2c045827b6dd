# Managed Kubernetes: the cluster and its node groups (e.g. `system` for Airflow and the API, `steps` for the
# pods the generated DAGs launch per step, autoscaled).

resource "nebius_mk8s_v1_cluster" "this" {
  parent_id = var.parent_id
  name      = "${var.name_prefix}-k8s"
  labels    = var.labels

  control_plane = {
    subnet_id         = var.subnet_id
    version           = var.kubernetes_version
    etcd_cluster_size = var.etcd_cluster_size
    endpoints = {
      public_endpoint = {
        allowed_cidrs = var.api_allowed_cidrs
      }
    }
  }
}

resource "nebius_mk8s_v1_node_group" "this" {
  for_each = var.node_groups

  parent_id = nebius_mk8s_v1_cluster.this.id
  name      = each.key
  version   = var.kubernetes_version
  labels    = var.labels

  autoscaling = {
    min_node_count = each.value.min_nodes
    max_node_count = each.value.max_nodes
  }

  template = {
    resources = {
      platform = each.value.platform
      preset   = each.value.preset
    }
    boot_disk = {
      type           = "NETWORK_SSD"
      size_gibibytes = each.value.disk_gibibytes
    }
    network_interfaces = [
      {
        subnet_id = var.subnet_id
      },
    ]
    metadata = {
      labels = merge({ "airduck.io/node-group" = each.key }, each.value.labels)
    }
    taints             = each.value.taints
    service_account_id = var.node_service_account_id
  }

  strategy = {
    max_unavailable = {
      count = 1
    }
    max_surge = {
      count = 1
    }
  }
}
