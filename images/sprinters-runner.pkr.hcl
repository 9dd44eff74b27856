# Builds a Sprinters runner image on EC2: a stock Ubuntu AMI from
# Canonical, provisioned by provision.sh, saved as
# `sprinters-runner-<image>-<timestamp>`, the name the launcher looks up.
#
#   packer build -var region=eu-west-1 -var image=ubuntu-24.04 images/sprinters-runner.pkr.hcl

variable "region" {
  type        = string
  description = "The region the image is built in (copy it to others with ami_regions)."
}

variable "image" {
  type        = string
  default     = "ubuntu-24.04"
  description = "The label's image name: ubuntu-24.04, ubuntu-22.04 (each also -slim, -minimal), ubuntu-24.04-arm, ubuntu-22.04-arm (each also -minimal)."
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Other regions the image is copied to."
}

variable "runner_version" {
  type        = string
  default     = ""
  description = "The GitHub Actions runner release; empty for the one provision.sh pins."
}

variable "runner_sha256" {
  type        = string
  default     = ""
  description = "The SHA-256 of that release's tarball; required with runner_version."
}

variable "runner_sudo" {
  type        = bool
  default     = false
  description = "Give the runner user sudo without a password, as GitHub's hosted runners do; the job is then root on its instance."
}

locals {
  # Canonical's AMIs for each image name (owner 099720109477).
  noble_x64   = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
  noble_arm   = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"
  jammy_x64   = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
  jammy_arm   = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-*"
  noble_x64_m = "ubuntu/images-minimal/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-minimal-*"
  noble_arm_m = "ubuntu/images-minimal/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-minimal-*"
  jammy_x64_m = "ubuntu/images-minimal/hvm-ssd/ubuntu-jammy-22.04-amd64-minimal-*"
  jammy_arm_m = "ubuntu/images-minimal/hvm-ssd/ubuntu-jammy-22.04-arm64-minimal-*"
  bases = {
    "ubuntu-24.04"             = local.noble_x64
    "ubuntu-24.04-slim"        = local.noble_x64
    "ubuntu-24.04-minimal"     = local.noble_x64_m
    "ubuntu-22.04"             = local.jammy_x64
    "ubuntu-22.04-slim"        = local.jammy_x64
    "ubuntu-22.04-minimal"     = local.jammy_x64_m
    "ubuntu-24.04-arm"         = local.noble_arm
    "ubuntu-24.04-arm-minimal" = local.noble_arm_m
    "ubuntu-22.04-arm"         = local.jammy_arm
    "ubuntu-22.04-arm-minimal" = local.jammy_arm_m
  }
  arm       = contains(split("-", var.image), "arm")
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())
}

source "amazon-ebs" "runner" {
  region        = var.region
  ami_regions   = var.ami_regions
  ami_name      = "sprinters-runner-${var.image}-${local.timestamp}"
  instance_type = local.arm ? "t4g.large" : "t3.large"
  ssh_username  = "ubuntu"
  encrypt_boot  = true

  source_ami_filter {
    filters = {
      name                  = local.bases[var.image]
      architecture          = local.arm ? "arm64" : "x86_64"
      "root-device-type"    = "ebs"
      "virtualization-type" = "hvm"
    }
    owners      = ["099720109477"]
    most_recent = true
  }

  tags = {
    "sprinters:image"          = var.image
    "sprinters:runner-version" = var.runner_version == "" ? "pinned" : var.runner_version
  }
}

build {
  sources = ["source.amazon-ebs.runner"]

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "RUNNER_VERSION=${var.runner_version}",
      "RUNNER_SHA256=${var.runner_sha256}",
      "RUNNER_SUDO=${var.runner_sudo ? "yes" : "no"}",
    ]
  }
}
