variable "parent_id" {
  description = "The Nebius project."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the registry's name."
  type        = string
}

variable "region" {
  description = "The region, for the registry's address (cr.<region>.nebius.cloud)."
  type        = string
}

variable "labels" {
  description = "Labels on the registry."
  type        = map(string)
  default     = {}
}
