variable "parent_id" {
  description = "The Nebius project the buckets and the service account belong to."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every name (bucket names are global: include the team or company)."
  type        = string
}

variable "editors_group_id" {
  description = "The IAM group (e.g. the tenant's editors group) the storage service account joins."
  type        = string
}

variable "landing_prefix" {
  description = "The key prefix of raw files in the landing bucket (airduck.yml lake.landing)."
  type        = string
  default     = "landing/"
}

variable "landing_noncurrent_days" {
  description = "Days a replaced or deleted raw file's old version is kept."
  type        = number
  default     = 30
}

variable "landing_expire_days" {
  description = "Days raw files are kept in the landing zone (0: forever)."
  type        = number
  default     = 0
}

variable "labels" {
  description = "Labels on every resource."
  type        = map(string)
  default     = {}
}
