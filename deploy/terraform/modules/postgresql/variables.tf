variable "parent_id" {
  description = "The Nebius project."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the cluster's name."
  type        = string
}

variable "network_id" {
  description = "The VPC network the cluster's hosts join (the Kubernetes cluster's network)."
  type        = string
}

variable "database" {
  description = "The database created with the cluster: the lake's catalog."
  type        = string
  default     = "airduck_catalog"
}

variable "user" {
  description = "The owner of the database."
  type        = string
  default     = "airduck"
}

variable "password" {
  description = "The owner's password (from a SOPS file or TF_VAR_postgres_password; never in a .tfvars file)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "password_version" {
  description = "Change it to rotate the password (write-only attributes are only sent when this changes)."
  type        = string
  default     = "1"
}

variable "postgres_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "platform" {
  description = "Host platform."
  type        = string
  default     = "cpu-e2"
}

variable "preset" {
  description = "Host size."
  type        = string
  default     = "2vcpu-8gb"
}

variable "disk_gibibytes" {
  description = "Disk per host."
  type        = number
  default     = 32
}

variable "hosts" {
  description = "Hosts in the cluster (more than one: a standby takes over)."
  type        = number
  default     = 1
}

variable "max_pool_size" {
  description = "Connection pooler size."
  type        = number
  default     = 50
}

variable "backup_window_start" {
  description = "Daily backup start (UTC, HH:MM:SS)."
  type        = string
  default     = "02:00:00"
}

variable "backup_retention" {
  description = "How long backups are kept (e.g. 7d)."
  type        = string
  default     = "7d"
}

variable "labels" {
  description = "Labels on the cluster."
  type        = map(string)
  default     = {}
}
