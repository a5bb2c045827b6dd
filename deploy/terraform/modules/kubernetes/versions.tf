terraform {
  required_version = ">= 1.10"
  required_providers {
    nebius = {
      source  = "nebius/nebius"
      version = "~> 0.6"
    }
  }
}
