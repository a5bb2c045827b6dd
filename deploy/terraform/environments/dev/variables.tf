variable "parent_id" {
  description = "The Nebius project (project-...)."
  type        = string
}

variable "region" {
  description = "The project's region (e.g. eu-north1)."
  type        = string
  default     = "eu-north1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (bucket names are global: include the team or company)."
  type        = string
}

variable "network_id" {
  description = "The VPC network (the project's default network works)."
  type        = string
}

variable "subnet_id" {
  description = "The VPC subnet of the Kubernetes cluster."
  type        = string
}

variable "editors_group_id" {
  description = "The IAM group the storage service account joins (e.g. the tenant's editors group)."
  type        = string
}

variable "postgres_password" {
  description = "Password of the catalog's owner: TF_VAR_postgres_password, e.g. from `sops decrypt`."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "postgres_password_version" {
  description = "Bump to send a new postgres_password."
  type        = string
  default     = "1"
}

variable "kubernetes_version" {
  description = "Kubernetes minor version."
  type        = string
  default     = "1.32"
}

variable "api_allowed_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API."
  type        = list(string)
  default     = []
}

variable "node_service_account_id" {
  description = "Service account of the nodes, with pull access to the registry (null: none)."
  type        = string
  default     = null
}

variable "labels" {
  description = "Extra labels on every resource."
  type        = map(string)
  default     = {}
}
