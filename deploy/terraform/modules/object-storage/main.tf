# Object storage for the lake: `lake` holds DuckLake's data files (versioning off: DuckLake keeps its own
# snapshots), `landing` holds raw files as received (versioned, with lifecycle rules). A service account with an
# access key reads and writes both (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the airduck pods).

resource "nebius_storage_v1_bucket" "lake" {
  parent_id             = var.parent_id
  name                  = "${var.name_prefix}-lake"
  default_storage_class = "STANDARD"
  versioning_policy     = "DISABLED"
  labels                = var.labels
}

resource "nebius_storage_v1_bucket" "landing" {
  parent_id             = var.parent_id
  name                  = "${var.name_prefix}-landing"
  default_storage_class = "STANDARD"
  versioning_policy     = "ENABLED"
  labels                = var.labels

  lifecycle_configuration = {
    rules = [
      {
        id     = "abort-incomplete-multipart-uploads"
        status = "ENABLED"
        filter = { prefix = "" }
        abort_incomplete_multipart_upload = {
          days_after_initiation = 7
        }
      },
      {
        id     = "expire-replaced-versions"
        status = "ENABLED"
        filter = { prefix = "" }
        noncurrent_version_expiration = {
          noncurrent_days = var.landing_noncurrent_days
        }
      },
      {
        # raw files are kept forever unless landing_expire_days > 0
        id     = "expire-raw-files"
        status = var.landing_expire_days > 0 ? "ENABLED" : "DISABLED"
        filter = { prefix = var.landing_prefix }
        expiration = {
          days = max(var.landing_expire_days, 1)
        }
      },
    ]
  }
}

resource "nebius_iam_v1_service_account" "storage" {
  parent_id   = var.parent_id
  name        = "${var.name_prefix}-storage"
  description = "airduck: reads and writes the lake and landing buckets"
}

resource "nebius_iam_v1_group_membership" "storage_editor" {
  parent_id = var.editors_group_id
  member_id = nebius_iam_v1_service_account.storage.id
}

resource "nebius_iam_v2_access_key" "storage" {
  parent_id   = var.parent_id
  name        = "${var.name_prefix}-storage"
  description = "airduck pods (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
  account = {
    service_account = {
      id = nebius_iam_v1_service_account.storage.id
    }
  }
  # the secret is kept in MysteryBox (Nebius' secret store), never in the Terraform state
  secret_delivery_mode = "MYSTERY_BOX"
}
