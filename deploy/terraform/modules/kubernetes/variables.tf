variable "parent_id" {
  description = "The Nebius project."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the cluster's name."
  type        = string
}

variable "subnet_id" {
  description = "The VPC subnet of the control plane and the nodes."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and the node groups."
  type        = string
  default     = "1.32"
}

variable "etcd_cluster_size" {
  description = "1 for dev, 3 for a control plane that survives a lost member."
  type        = number
  default     = 1
}

variable "api_allowed_cidrs" {
  description = "Who may reach the Kubernetes API's public endpoint."
  type        = list(string)
  default     = []
}

variable "node_service_account_id" {
  description = "Service account of the nodes (to pull from the container registry); null: none."
  type        = string
  default     = null
}

variable "node_groups" {
  description = "Node groups by name."
  type = map(object({
    platform       = string
    preset         = string
    min_nodes      = number
    max_nodes      = number
    disk_gibibytes = optional(number, 64)
    labels         = optional(map(string), {})
    taints = optional(list(object({
      key    = string
      value  = string
      effect = string
    })), [])
  }))
}

variable "labels" {
  description = "Labels on the cluster and the node groups."
  type        = map(string)
  default     = {}
}
