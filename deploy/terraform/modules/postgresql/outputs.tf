output "cluster_id" {
  description = "The PostgreSQL cluster."
  value       = nebius_msp_postgresql_v1alpha1_cluster.this.id
}

output "host" {
  description = "Private read-write endpoint (the host of AIRDUCK_CATALOG=postgresql://airduck:...@<this>/airduck_catalog)."
  value       = nebius_msp_postgresql_v1alpha1_cluster.this.status.connection_endpoints.private_read_write
}
