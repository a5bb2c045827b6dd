output "cluster_id" {
  description = "The cluster (nebius mk8s cluster get-credentials --id <this> --external)."
  value       = nebius_mk8s_v1_cluster.this.id
}

output "node_group_ids" {
  description = "Node group ids by name."
  value       = { for name, group in nebius_mk8s_v1_node_group.this : name => group.id }
}
