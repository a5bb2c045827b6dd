terraform {
  required_version = ">= 1.10"
  required_providers {
    nebius = {
      source  = "nebius/nebius"
      version = "~> 0.6"
    }
  }
  # state in Nebius Object Storage (S3 API): terraform init -backend-config=backend.hcl
  # (bucket, key, region, endpoints.s3 = "https://storage.<region>.nebius.cloud", skip_* checks; see README)
  backend "s3" {}
}

provider "nebius" {
  # credentials: a service account (NEBIUS_IAM_TOKEN, or the `nebius` CLI profile); see the provider's guide
}
