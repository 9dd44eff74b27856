#!/bin/sh
# Turns a stock Ubuntu 24.04 or 22.04 (x86_64 or arm64) into a Sprinters
# runner image. Run as root on the machine that becomes the image (Packer
# runs it on EC2; scripts/vm-test runs it in a Debian 12 chroot).
#
# What the image promises, and where this script makes it so:
#   - the GitHub Actions runner in /opt/actions-runner for user `runner`,
#     pinned and checksum-verified                         (install_runner)
#   - `/` read-only under a throwaway writable layer on the encrypted temp
#     volume: the initramfs opens the temp device under dm-crypt with a
#     random key and formats it, then overlayroot puts `/` over it
#                                                        (install_overlay)
#   - no SSH daemon, no authorized key, nothing listening    (lock_down)
#   - what the boot script needs: curl, cryptsetup, nvme-cli, mkfs, zram,
#     nftables
#
# Parameters (environment):
#   RUNNER_VERSION   the runner release (default below)
#   RUNNER_SOURCE    URL or local path of the runner tarball (default:
#                    GitHub's release for RUNNER_VERSION and this machine)
#   RUNNER_SHA256    its SHA-256; required when RUNNER_SOURCE is given
#   RUNNER_SUDO      yes: the runner user gets sudo without a password, as
#                    on GitHub's hosted runners; then the job is root, and
#                    the metadata service and the boot volume are closed
#                    to it no more (default: no)
set -eu

DEFAULT_RUNNER_VERSION=2.326.0
# GitHub's published checksums of the 2.326.0 release assets.
SHA256_X64=9c74af9b4352bbc99aecc7353b47bcdfcd1b2a0f6d15af54a99f54a0c14a1de8
SHA256_ARM64=ee7c229c979c5152e9f12be16ee9e83ff74c9d9b95c3c1aeb2e9b6d07157ec85

RUNNER_DIR=/opt/actions-runner
RUNNER_USER=runner

log() {
    printf 'sprinters-provision: %s\n' "$*" >&2
}

die() {
    log "$*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root"

export DEBIAN_FRONTEND=noninteractive

install_packages() {
    apt-get update -q
    # busybox gives the initramfs the tools its temp-volume script uses.
    busybox=busybox
    if apt-cache show busybox-initramfs 2>/dev/null | grep -q '^Version:'; then
        busybox="busybox-initramfs"
    fi
    apt-get install -y -q --no-install-recommends \
        ca-certificates curl cryptsetup cryptsetup-bin e2fsprogs iproute2 \
        kmod nftables nvme-cli overlayroot sudo util-linux initramfs-tools "$busybox"
    # zram lives in linux-modules-extra on Ubuntu's cloud kernels.
    for kernel in /lib/modules/*; do
        version=${kernel##*/}
        if ! find "$kernel" -name 'zram.ko*' | grep -q .; then
            apt-get install -y -q "linux-modules-extra-$version" ||
                die "no zram module for kernel $version"
        fi
    done
}

install_runner() {
    case "$(uname -m)" in
    x86_64) arch=x64 sha=$SHA256_X64 ;;
    aarch64) arch=arm64 sha=$SHA256_ARM64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
    esac
    version=${RUNNER_VERSION:-$DEFAULT_RUNNER_VERSION}
    if [ -n "${RUNNER_SOURCE:-}" ]; then
        [ -n "${RUNNER_SHA256:-}" ] || die "RUNNER_SOURCE needs RUNNER_SHA256"
        source=$RUNNER_SOURCE
        sha=$RUNNER_SHA256
    else
        [ "$version" = "$DEFAULT_RUNNER_VERSION" ] || [ -n "${RUNNER_SHA256:-}" ] ||
            die "RUNNER_VERSION $version needs RUNNER_SHA256"
        sha=${RUNNER_SHA256:-$sha}
        source="https://github.com/actions/runner/releases/download/v$version/actions-runner-linux-$arch-$version.tar.gz"
    fi
    tarball=$(mktemp)
    case "$source" in
    http://* | https://*) curl -fsSL --retry 3 -o "$tarball" "$source" ;;
    *) cp "$source" "$tarball" ;;
    esac
    echo "$sha  $tarball" | sha256sum -c --quiet - ||
        die "the runner tarball's checksum is not $sha"

    id "$RUNNER_USER" >/dev/null 2>&1 ||
        useradd --create-home --shell /bin/bash "$RUNNER_USER"
    # The job runs as this user. With sudo it would be root, and the
    # firewall rule that keeps the JIT config in the user data from it,
    # like the read-only boot volume, would hold no more: only on request.
    case "${RUNNER_SUDO:-no}" in
    yes)
        echo "$RUNNER_USER ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/90-sprinters-runner
        chmod 0440 /etc/sudoers.d/90-sprinters-runner
        ;;
    no) rm -f /etc/sudoers.d/90-sprinters-runner ;;
    *) die "RUNNER_SUDO is yes or no, not ${RUNNER_SUDO}" ;;
    esac

    mkdir -p "$RUNNER_DIR"
    tar -xzf "$tarball" -C "$RUNNER_DIR"
    rm -f "$tarball"
    if [ -x "$RUNNER_DIR/bin/installdependencies.sh" ]; then
        "$RUNNER_DIR/bin/installdependencies.sh"
    fi
    chown -R "$RUNNER_USER:" "$RUNNER_DIR"
}

# The initramfs opens the temp device before overlayroot mounts `/` over
# it. The device is the first of: the EBS volume attached as sdf (gp3), the
# first instance-store disk (ephemeral), or a zram disk of half the memory.
# The boot script finds it open and puts /tmp, Docker and the runner's work
# directory on it too.
install_overlay() {
    mkdir -p /etc/initramfs-tools/hooks /etc/initramfs-tools/scripts/local-bottom
    cat >/etc/initramfs-tools/hooks/sprinters-temp <<'HOOK'
#!/bin/sh
PREREQ="overlayroot"
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
copy_exec /usr/sbin/nvme /sbin
copy_exec /sbin/cryptsetup /sbin
# Under its own name: busybox's mke2fs applet knows no ext4.
copy_exec /sbin/mke2fs /sbin/sprinters-mke2fs
[ -f /etc/mke2fs.conf ] && copy_file config /etc/mke2fs.conf /etc/mke2fs.conf
manual_add_modules zram
manual_add_modules dm_crypt
manual_add_modules xts
# An image's rule that names EC2's NVMe devices (sdf) early, if it has one.
for rule in /etc/udev/rules.d/70-ec2-nvme-devices.rules /lib/udev/rules.d/70-ec2-nvme-devices.rules; do
    if [ -f "$rule" ]; then
        copy_file rule "$rule" /lib/udev/rules.d/70-ec2-nvme-devices.rules
        break
    fi
done
HOOK
    chmod 0755 /etc/initramfs-tools/hooks/sprinters-temp
    mkdir -p /etc/initramfs-tools/conf.d
    echo BUSYBOX=y >/etc/initramfs-tools/conf.d/sprinters

    cat >/etc/initramfs-tools/scripts/local-bottom/sprinters-temp <<'SCRIPT'
#!/bin/sh
# Opens the instance's temp device under dm-crypt with a random key and
# formats it, for overlayroot to put `/` over. A failure ends the instance:
# nothing may run with a writable boot volume.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /scripts/functions

fail() {
    log_failure_msg "sprinters-temp: $*; powering off"
    sleep 2
    poweroff -f
    # Never go on to boot with a writable boot volume.
    echo o >/proc/sysrq-trigger
    while :; do sleep 60; done
}

temp_device() {
    for dev in /dev/sdf /dev/xvdf; do
        [ -b "$dev" ] && { echo "$dev"; return 0; }
    done
    # EBS on Nitro: the NVMe controller's vendor data names the device.
    for dev in /dev/nvme*n1; do
        [ -b "$dev" ] || continue
        name=$(nvme id-ctrl --raw-binary "$dev" 2>/dev/null | dd bs=1 skip=3072 count=32 2>/dev/null | tr -d ' \000')
        case "$name" in sdf | /dev/sdf) echo "$dev"; return 0 ;; esac
    done
    for dev in /dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_*; do
        [ -b "$dev" ] && { echo "$dev"; return 0; }
    done
    for model in /sys/block/nvme*n1/device/model; do
        [ -f "$model" ] || continue
        case "$(cat "$model")" in
        "Amazon EC2 NVMe Instance Storage"*)
            dev=${model%/device/model}
            echo "/dev/${dev##*/}"
            return 0
            ;;
        esac
    done
    modprobe zram num_devices=1 || return 1
    while read -r key value _; do
        [ "$key" = "MemTotal:" ] && echo "$((value / 2))K" >/sys/block/zram0/disksize
    done </proc/meminfo
    echo /dev/zram0
}

wait_for_udev 10
modprobe dm_crypt || fail "no dm_crypt"
device=$(temp_device) || fail "no temp device"
cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512 \
    --key-file /dev/urandom "$device" sprinters-temp || fail "cryptsetup on $device failed"
sprinters-mke2fs -q -F -t ext4 /dev/mapper/sprinters-temp || fail "mkfs on $device failed"
log_success_msg "sprinters-temp: / writes go to $device under dm-crypt"
SCRIPT
    chmod 0755 /etc/initramfs-tools/scripts/local-bottom/sprinters-temp

    cat >/etc/overlayroot.conf <<'CONF'
# Sprinters: `/` read-only under a writable layer on the temp device that
# the initramfs opened under dm-crypt with a random key (sprinters-temp).
overlayroot="device:dev=/dev/mapper/sprinters-temp,timeout=10,swap=0"
overlayroot_cfgdisk="disabled"
CONF
    update-initramfs -u -k all
    # Canonical's EC2 images boot their kernel without an initramfs when
    # they can (GRUB_FORCE_PARTUUID): then nothing above would run. Boot
    # through the initramfs always.
    if [ -f /etc/default/grub.d/40-force-partuuid.cfg ]; then
        rm -f /etc/default/grub.d/40-force-partuuid.cfg
        update-grub
    fi
    # The EFI partition is the one mount overlayroot leaves writable.
    if [ -f /etc/fstab ]; then
        awk '$2 == "/boot/efi" && $4 !~ /noauto/ { $4 = $4 ",ro,noauto" } { print }' /etc/fstab >/etc/fstab.sprinters
        mv /etc/fstab.sprinters /etc/fstab
    fi
    # The boot script refuses to run a job on this image unless `/` is the
    # read-only overlay.
    echo "overlay" >/etc/sprinters-image
}

lock_down() {
    # No SSH server, no remote login of any kind, no keys.
    systemctl disable --now apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
    for package in openssh-server ec2-instance-connect rpcbind avahi-daemon cups-daemon unattended-upgrades; do
        if dpkg -s "$package" >/dev/null 2>&1; then
            apt-get purge -y -q "$package"
        fi
    done
    if dpkg -s openssh-server >/dev/null 2>&1; then die "openssh-server is still installed"; fi
    systemctl mask ssh.service ssh.socket sshd.service >/dev/null 2>&1 || true
    # Session Manager's agent (a snap on Canonical's EC2 images) is a
    # login path too.
    if command -v snap >/dev/null 2>&1 && snap list amazon-ssm-agent >/dev/null 2>&1; then
        snap remove --purge amazon-ssm-agent
    fi
    find / -xdev -name 'authorized_keys*' -path '*/.ssh/*' -exec rm -f {} +
    rm -f /etc/ssh/ssh_host_*
    if [ -d /etc/cloud ]; then
        mkdir -p /etc/cloud/cloud.cfg.d
        cat >/etc/cloud/cloud.cfg.d/90-sprinters.cfg <<'CFG'
# Sprinters runners take no login: no keys from metadata, no passwords,
# no default login user.
users: []
disable_root: true
ssh_pwauth: false
allow_public_ssh_keys: false
ssh_deletekeys: true
ssh_genkeytypes: []
# The boot volume is never grown or resized: it is read-only.
growpart:
  mode: "off"
resize_rootfs: false
CFG
    fi
    # Nothing listens: the resolver's stub on 127.0.0.53, chrony's command
    # port, LLMNR and mDNS.
    if [ -d /etc/systemd ]; then
        mkdir -p /etc/systemd/resolved.conf.d
        printf '[Resolve]\nDNSStubListener=no\nLLMNR=no\nMulticastDNS=no\n' \
            >/etc/systemd/resolved.conf.d/90-sprinters.conf
        # Without the stub, names resolve through the upstream list.
        if readlink /etc/resolv.conf 2>/dev/null | grep -q stub-resolv.conf; then
            ln -sf ../run/systemd/resolve/resolv.conf /etc/resolv.conf
        fi
    fi
    if [ -d /etc/chrony ]; then
        mkdir -p /etc/chrony/conf.d
        echo 'cmdport 0' >/etc/chrony/conf.d/90-sprinters.conf
    fi
}

clean() {
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    if command -v cloud-init >/dev/null 2>&1; then
        cloud-init clean --logs || true
    fi
    # A fresh machine id on every boot.
    : >/etc/machine-id
}

install_packages
install_runner
install_overlay
lock_down
clean
log "done: the runner is in $RUNNER_DIR; / is read-only from the next boot"
