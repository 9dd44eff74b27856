#!/bin/sh
# The VM test's probe, run as root inside the runner VM once the stand-in
# runner has started. Each check prints `PROBE pass|fail <name> <detail>`
# on the second serial port; scripts/vm-test reads them. Then it lets the
# runner exit.
set -u
RUNNER_DIR=/opt/actions-runner
WORK=$RUNNER_DIR/_work
OUT=/dev/ttyS1

say() {
    printf '%s\n' "$*" >"$OUT"
}

result() { # name, detail, then the command whose status decides
    name=$1 detail=$2
    shift 2
    if "$@" >/dev/null 2>&1; then
        say "PROBE pass $name $detail"
    else
        say "PROBE fail $name $detail"
    fi
}

waited=0
while [ ! -e "$WORK/.runner-started" ]; do
    sleep 1
    waited=$((waited + 1))
    [ "$waited" -lt 300 ] || {
        say "PROBE norunner"
        exit 0
    }
done
say "PROBE runner-started"
pid=$(cat "$WORK/.runner-pid")
jit=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^ACTIONS_RUNNER_INPUT_JITCONFIG=//p')
config=$(printf '%s' "$jit" | base64 -d)
field() {
    printf '%s' "$config" | sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"
}
marker=$(field marker)
gone=$(field gone)
kind=$(field kind)

# The JIT config reached the runner through its environment, and no
# process's command line carries it.
result jit-in-environment "" test -n "$jit"
in_argv() {
    for cmdline in /proc/[0-9]*/cmdline; do
        tr '\0' ' ' <"$cmdline" 2>/dev/null | grep -qF "$jit" && return 0
    done
    return 1
}
not() { ! "$@"; }
result jit-not-in-argv "" not in_argv
result runner-user "$(stat -c %U "/proc/$pid")" test "$(stat -c %U "/proc/$pid")" = runner

# `/` is an overlay whose writable layer is on the encrypted temp device;
# the boot volume under it is mounted read-only.
mounts=$(cat /proc/mounts)
root_line=$(printf '%s\n' "$mounts" | awk '$2 == "/" { l = $0 } END { print l }')
has() { printf '%s\n' "$1" | grep -Eq "$2"; }
result root-is-overlay "$(echo "$root_line" | cut -d' ' -f1-3)" has "$root_line" ' / overlay .*upperdir=/media/root-rw/'
result overlay-upper-on-dm-crypt "" has "$mounts" '^/dev/mapper/sprinters-temp /media/root-rw '
result boot-volume-mounted-ro "" has "$mounts" '^[^ ]+ /media/root-ro [^ ]+ ro[, ]'
result boot-volume-write-fails "" not touch /media/root-ro/usr/sprinters-probe
# A write under /usr lands in the overlay; the host checks it is not on
# the boot disk after the VM ends.
write_usr() { echo "$marker" >/usr/sprinters-probe; }
result usr-write-lands-in-overlay "" write_usr

# The temp device: dm-crypt, plain mode, a random key, on the device the
# label's kind asks for.
status=$(cryptsetup status sprinters-temp 2>&1)
device=$(printf '%s\n' "$status" | sed -n 's/^ *device: *//p')
plain_xts() { has "$1" 'type: *PLAIN' && has "$1" 'cipher: *aes-xts-plain64'; }
result temp-dm-crypt-plain "$kind on $device" plain_xts "$status"
case "$kind" in
gp3) want=$(readlink -f /dev/sdf) ;;
ephemeral) want=$(readlink -f /dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS0VMTEST) ;;
zram) want=/dev/zram0 ;;
*) want=unknown ;;
esac
result temp-on-the-kinds-device "$device (want $want)" test "$device" = "$want"

# Every place a job writes is on it.
for path in / /tmp "$WORK" /var/lib/docker /home/runner; do
    source=$(findmnt -n -o SOURCE --target "$path")
    case "$path:$source" in
    /:overlayroot | /:overlay | /home/runner:overlayroot | /home/runner:overlay) ok=true ;;
    *:/dev/mapper/sprinters-temp*) ok=true ;;
    *) ok=false ;;
    esac
    result "writes-on-dm-crypt:$path" "$source" "$ok"
    echo "$marker" >"$path/.sprinters-marker" 2>/dev/null || echo "$marker" >"$path/sprinters-marker"
done

# Swap: on its own volume (sdg), under dm-crypt with a random key.
swap_status=$(cryptsetup status sprinters-swap 2>&1)
swap_device=$(printf '%s\n' "$swap_status" | sed -n 's/^ *device: *//p')
result swap-dm-crypt-plain "$swap_device" plain_xts "$swap_status"
result swap-on-its-volume "$swap_device" test "$swap_device" = "$(readlink -f /dev/sdg)"
result swap-active "" has "$(swapon --show=NAME --noheadings --raw)" "^$(readlink -f /dev/mapper/sprinters-swap)\$"
# The keys, hashed: the host checks they differ between volumes and boots.
for map in sprinters-temp sprinters-swap; do
    key=$(dmsetup table --showkeys "$map" | cut -d' ' -f5 | sha256sum | cut -c1-16)
    say "PROBE key $map $key"
done
if [ "$kind" = gp3 ] && [ -z "$gone" ]; then
    # Push the marker into swap: a file on tmpfs full of it, then memory
    # pressure. The host checks the swap disk holds no copy in clear.
    mkdir -p /dev/shm
    yes "$marker" | head -c 200M >/dev/shm/sprinters-marker
    python3 -c 'b = bytearray(750 * 2**20); b[::4096] = b"x" * len(b[::4096])' || true
    used=$(awk 'NR > 1 { s += $4 } END { print s + 0 }' /proc/swaps)
    result swap-used-under-pressure "${used} KiB" test "$used" -gt 0
fi

# A boot of the same disks: what the previous boot wrote is gone (the
# host checks that the disks hold none of it in clear either).
if [ -n "$gone" ]; then
    result previous-boot-files-gone "" not grep -rqsF "$gone" /tmp "$WORK" /var/lib/docker /usr/sprinters-probe /root
fi

# The metadata service (whose user data holds the JIT config) is closed to
# the job's user once the boot script has read it; root still reaches it.
imds_as() {
    runuser -u "$1" -- curl -s -f -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
        http://169.254.169.254/latest/api/token
}
result imds-closed-to-the-runner-user "" not imds_as runner
result imds-open-to-root "" imds_as root
result runner-user-has-no-sudo "" not runuser -u runner -- sudo -n true

# Nothing listens. The one socket allowed is the DHCP client's (UDP 68,
# systemd-networkd): EC2 needs DHCP, the client takes only its server's
# answers, and the security group admits nothing.
sockets=$(ss -H -tulpn) || sockets="ss failed"
listening=$(printf '%s\n' "$sockets" | grep -Ev '^udp .*:68 .*"systemd-network"' | tr -s ' ' | tr '\n' ';')
result nothing-listens "${listening:-none; the DHCP client aside}" test -z "$listening"

# No SSH daemon, no authorized key anywhere, and the key the metadata
# offered was not installed.
# (The test image had openssh-server before the recipe ran.)
no_sshd() { ! command -v sshd && [ ! -e /usr/sbin/sshd ]; }
result no-ssh-daemon "" no_sshd
# A file with no key in it authorizes nothing (cloud-init leaves empty ones).
keys=$(find / /media/root-ro -xdev -name 'authorized_keys*' -type f \
    -exec grep -lvE '^[[:space:]]*(#|$)' {} + 2>/dev/null | tr '\n' ' ')
result no-authorized-keys "${keys:-none}" test -z "$keys"
result metadata-key-refused "" not grep -rqs sprinters-vm-test-key /root /home /etc/ssh

say "PROBE done"
: >"$WORK/.probe-done"
