output "registry_id" {
  description = "The registry."
  value       = nebius_registry_v1_registry.this.id
}

output "image_prefix" {
  description = "Where images are pushed: <this>/airduck:<tag>."
  value       = "cr.${var.region}.nebius.cloud/${trimprefix(nebius_registry_v1_registry.this.id, "registry-")}"
}
