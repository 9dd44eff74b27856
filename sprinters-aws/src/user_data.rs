//! The boot script (EC2 user data) of a runner instance, generated per
//! launch. POSIX `sh`, checked by shellcheck in the tests.
//!
//! What it does, in order: arms a watchdog that ends the instance after the
//! maximum lifetime, and a trap that ends it at once if anything fails
//! before the runner starts; reads instance metadata with IMDSv2 tokens
//! only, then closes the metadata service to every user but root (the
//! user data holds the JIT config); puts swap on its own volume under dm-crypt with a throwaway random
//! key; puts the temp volume (gp3, instance store, or zram) under dm-crypt
//! the same way and mounts it where the runner, `/tmp` and Docker write;
//! starts the runner with the JIT config (one job); shuts the instance down
//! when the runner exits (instance-initiated shutdown terminates it).
//!
//! On the Sprinters image (`images/provision.sh`) the boot volume is
//! read-only: the initramfs opens the temp device under dm-crypt and
//! overlayroot mounts `/` over it, so the script finds the temp volume open
//! and only adds its mounts. On other images it opens the temp volume
//! itself, and the mounts above keep the job's own writes on it.

use std::fmt::Write as _;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sprinters_core::labels::{RunnerSpec, TempKind};
use sprinters_core::{Error, Result};

/// The device name the launcher attaches the temp volume as.
pub const TEMP_DEVICE: &str = "/dev/sdf";
/// The device name the launcher attaches the swap volume as.
pub const SWAP_DEVICE: &str = "/dev/sdg";

/// Where the image installs the runner, and as whom it runs.
#[derive(Debug, Clone)]
pub struct RunnerLayout {
    /// The runner's directory (with `run.sh`).
    pub dir: String,
    /// The unprivileged user the runner runs as.
    pub user: String,
}

impl Default for RunnerLayout {
    fn default() -> Self {
        Self {
            dir: "/opt/actions-runner".to_owned(),
            user: "runner".to_owned(),
        }
    }
}

/// The boot script for one launch. It holds the JIT config, so it is a
/// secret itself.
pub fn boot_script(
    spec: &RunnerSpec,
    jit_config: &SecretString,
    max_lifetime: Duration,
    layout: &RunnerLayout,
) -> Result<SecretString> {
    let jit = jit_config.expose_secret();
    // Base64 only: nothing in it can end the quoted string below.
    if jit.is_empty()
        || !jit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    {
        return Err(Error::config(
            "the JIT config is not base64; refusing to put it in a boot script",
        ));
    }
    for (what, value) in [
        ("runner directory", &layout.dir),
        ("runner user", &layout.user),
    ] {
        let ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b));
        if !ok {
            return Err(Error::config(format!(
                "the {what} `{value}` has characters a boot script cannot take"
            )));
        }
    }
    let minutes = max_lifetime.as_secs().div_ceil(60).max(1);
    let temp_kind = match spec.temp.kind {
        TempKind::Gp3 => "gp3",
        TempKind::Ephemeral => "ephemeral",
        TempKind::Zram => "zram",
    };
    let zram_size = spec
        .temp
        .size_gib
        .map_or_else(String::new, |g| format!("{g}G"));

    let mut s = String::with_capacity(6 * 1024);
    let _ = write!(
        s,
        r#"#!/bin/sh
# Sprinters runner boot script, generated for one launch. Its only secret
# is the runner's just-in-time config: it is never traced, echoed or logged.
set -eu

MAX_LIFETIME_MINUTES={minutes}
RUNNER_DIR={dir}
RUNNER_USER={user}
TEMP_KIND={temp_kind}
ZRAM_SIZE={zram_size}
TEMP_DEVICE_NAME={temp_dev}
SWAP_DEVICE_NAME={swap_dev}

log() {{
    printf 'sprinters-boot: %s\n' "$*" >&2
}}

# The watchdog first: whatever happens next, the instance ends in time.
shutdown -h "+$MAX_LIFETIME_MINUTES" "sprinters: maximum lifetime reached" || true

# Until the runner starts, any failure ends the instance at once: no job
# may run on an instance whose volumes are not as promised, and nothing is
# left up until the watchdog for a boot that cannot succeed.
RUNNER_STARTED=0
boot_failed() {{
    status=$?
    if [ "$RUNNER_STARTED" = 0 ]; then
        log "the boot failed (status $status) before the runner started; shutting down"
        shutdown -h now
    fi
}}
trap boot_failed EXIT

# Instance metadata with IMDSv2 session tokens only.
TOKEN=$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
imds() {{
    curl -sSf -H "X-aws-ec2-metadata-token: $TOKEN" "http://169.254.169.254/latest/meta-data/$1"
}}
log "instance $(imds instance-id) booting"

# The user data there holds the JIT config: from here on only root reaches
# the metadata service, and the job runs as $RUNNER_USER.
if command -v nft >/dev/null 2>&1; then
    nft -f - <<'NFT'
table inet sprinters_imds {{
    chain output {{
        type filter hook output priority 0; policy accept;
        ip daddr 169.254.169.254 meta skuid != 0 reject
        ip6 daddr fd00:ec2::254 meta skuid != 0 reject
    }}
}}
NFT
elif command -v iptables >/dev/null 2>&1; then
    iptables -A OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT
else
    log "neither nft nor iptables: the metadata service cannot be closed to the job"
    exit 1
fi

# The block device EC2 attached under a name such as sdf: the name itself,
# or on Nitro instances the NVMe device whose controller reports it.
device_for() {{
    name=$1
    for candidate in "/dev/$name" "/dev/xvd${{name#sd}}"; do
        if [ -b "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    for dev in /dev/nvme*n1; do
        [ -b "$dev" ] || continue
        reported=$(nvme id-ctrl --raw-binary "$dev" 2>/dev/null | dd bs=1 skip=3072 count=32 2>/dev/null | tr -d ' \000')
        if [ "$reported" = "$name" ] || [ "$reported" = "/dev/$name" ]; then
            echo "$dev"
            return 0
        fi
    done
    return 1
}}

# dm-crypt with a throwaway key from the kernel: what is written there is
# unreadable after this boot, and gone when the volume is deleted.
encrypt() {{
    cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512 --key-file /dev/urandom "$1" "$2"
}}

# Swap on its own volume, fresh on every boot.
if swap=$(device_for "${{SWAP_DEVICE_NAME#/dev/}}"); then
    encrypt "$swap" sprinters-swap
    mkswap /dev/mapper/sprinters-swap >/dev/null
    swapon /dev/mapper/sprinters-swap
else
    log "no swap volume attached"
fi

# The temp volume, where the runner, /tmp and Docker write: under dm-crypt
# whatever its kind, zram (compressed RAM, which can reach swap) included.
# Its device, as the label's kind asks for it (zram is made below, when
# this script opens the volume itself).
case "$TEMP_KIND" in
gp3)
    temp=$(device_for "${{TEMP_DEVICE_NAME#/dev/}}")
    ;;
ephemeral)
    temp=""
    for disk in /dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_*; do
        if [ -b "$disk" ]; then
            temp=$disk
            break
        fi
    done
    if [ -z "$temp" ]; then
        log "temp=ephemeral needs an instance type with an instance store"
        exit 1
    fi
    ;;
zram)
    temp=""
    ;;
*)
    log "unknown temp kind $TEMP_KIND"
    exit 1
    ;;
esac
# On the Sprinters image (images/provision.sh) the initramfs has opened it
# already and `/` is a read-only overlay over it; elsewhere, open it here.
if grep -q '^/dev/mapper/sprinters-temp /media/root-rw ' /proc/mounts; then
    # The device the initramfs chose must be the one the label asks for
    # (zram takes the instance store where the type has one).
    backing=$(cryptsetup status sprinters-temp | sed -n 's/^ *device: *//p')
    if [ -z "$backing" ] || {{ [ -n "$temp" ] && [ "$(readlink -f "$temp")" != "$backing" ]; }}; then
        log "the image put / over ${{backing:-nothing}}, not the $TEMP_KIND temp volume the label asks for"
        exit 1
    fi
    temp_root=/media/root-rw/sprinters
    log "/ is read-only over the encrypted $TEMP_KIND temp volume the image opened"
elif [ -f /etc/sprinters-image ]; then
    log "this image's / must be a read-only overlay and is not; no job runs here"
    exit 1
else
    if [ "$TEMP_KIND" = zram ]; then
        modprobe zram num_devices=1
        if [ -z "$ZRAM_SIZE" ]; then
            ZRAM_SIZE="$(awk '/^MemTotal:/ {{ print int($2 / 2) }}' /proc/meminfo)K"
        fi
        echo "$ZRAM_SIZE" > /sys/block/zram0/disksize
        temp=/dev/zram0
    fi
    encrypt "$temp" sprinters-temp
    temp_dev=/dev/mapper/sprinters-temp
    mkfs.ext4 -q -F "$temp_dev"
    temp_root=/mnt/sprinters-temp
    mkdir -p "$temp_root"
    mount -o noatime "$temp_dev" "$temp_root"
fi
mkdir -p "$temp_root/tmp" "$temp_root/docker" "$temp_root/work"
chmod 1777 "$temp_root/tmp"
mount --bind "$temp_root/tmp" /tmp
mkdir -p /var/lib/docker "$RUNNER_DIR/_work"
mount --bind "$temp_root/docker" /var/lib/docker
chown "$RUNNER_USER" "$temp_root/work"
mount --bind "$temp_root/work" "$RUNNER_DIR/_work"

# The runner takes exactly one job and exits. Its config goes through the
# environment, not the command line, so no process listing shows it.
log "starting the runner"
cd "$RUNNER_DIR"
status=0
RUNNER_STARTED=1
ACTIONS_RUNNER_INPUT_JITCONFIG='{jit}' runuser -u "$RUNNER_USER" -- ./run.sh || status=$?
log "the runner exited with status $status; shutting down"
shutdown -h now
"#,
        dir = layout.dir,
        user = layout.user,
        temp_dev = TEMP_DEVICE,
        swap_dev = SWAP_DEVICE,
    );
    Ok(SecretString::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprinters_core::labels::LabelParser;

    fn script(label: &str, jit: &str) -> Result<String> {
        let spec = LabelParser::default().parse_label(label).unwrap();
        boot_script(
            &spec,
            &SecretString::from(jit.to_owned()),
            Duration::from_secs(6 * 3600),
            &RunnerLayout::default(),
        )
        .map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn the_jit_config_appears_once_quoted_and_nowhere_else() {
        let s = script("sprinters:aws", "eyJhIjoiYiJ9+/==").unwrap();
        assert_eq!(s.matches("eyJhIjoiYiJ9+/==").count(), 1);
        assert!(s.contains("ACTIONS_RUNNER_INPUT_JITCONFIG='eyJhIjoiYiJ9+/==' runuser"));
        assert!(!s.contains("--jitconfig"), "never on a command line");
        assert!(!s.contains("set -x"));
    }

    #[test]
    fn a_config_that_could_escape_the_quotes_is_refused_without_echoing_it() {
        for bad in ["abc'; rm -rf / #", "", "line\nbreak", "$(reboot)"] {
            let err = script("sprinters:aws", bad).unwrap_err();
            assert!(
                !err.to_string().contains("rm -rf") && !err.to_string().contains("reboot"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_watchdog_comes_first_and_metadata_uses_tokens() {
        let s = script("sprinters:aws", "abc=").unwrap();
        let watchdog = s.find("shutdown -h \"+$MAX_LIFETIME_MINUTES\"").unwrap();
        assert!(
            watchdog < s.find("curl").unwrap(),
            "armed before anything can hang"
        );
        assert!(s.contains("MAX_LIFETIME_MINUTES=360"));
        assert!(s.contains("X-aws-ec2-metadata-token-ttl-seconds"));
        assert_eq!(
            s.matches("http://169.254.169.254").count(),
            2,
            "the token call and the token-carrying reads only"
        );
        // Then closed to everyone but root, before the runner starts.
        let closed = s.find("meta skuid != 0 reject").unwrap();
        assert!(closed > s.find("imds instance-id").unwrap());
        assert!(closed < s.find("RUNNER_STARTED=1").unwrap());
    }

    /// Runs the boot script under `sh` with `curl` failing (no metadata
    /// service) and `shutdown` recorded: the instance must be shut down at
    /// once, after the watchdog was armed.
    #[test]
    fn a_boot_that_fails_before_the_runner_starts_ends_the_instance_at_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("shutdown.log");
        let stub = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        stub("shutdown", &format!("echo \"$*\" >> '{}'", log.display()));
        stub("curl", "exit 7");
        let boot = dir.path().join("boot.sh");
        std::fs::write(&boot, script("sprinters:aws", "abc=").unwrap()).unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg(&boot)
            .env_clear()
            .env("PATH", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let calls = std::fs::read_to_string(&log).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls[0].starts_with("-h +360"), "the watchdog: {calls:?}");
        assert_eq!(calls[1], "-h now", "then at once: {calls:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("before the runner started"), "{stderr}");
    }

    #[test]
    fn each_temp_kind_is_encrypted() {
        let gp3 = script("sprinters:temp=gp3/64", "abc=").unwrap();
        assert!(gp3.contains("TEMP_KIND=gp3") && gp3.contains("--key-file /dev/urandom"));
        assert!(
            script("sprinters:temp=ephemeral", "abc=")
                .unwrap()
                .contains("TEMP_KIND=ephemeral")
        );
        let zram = script("sprinters:temp=zram/8", "abc=").unwrap();
        assert!(zram.contains("TEMP_KIND=zram") && zram.contains("ZRAM_SIZE=8G"));
        // One encrypted mapping for every kind, made after the kind's
        // device is found, and the only thing formatted.
        let after_case = &zram[zram.find("esac").unwrap()..];
        assert!(after_case.contains("encrypt \"$temp\" sprinters-temp"));
        assert!(after_case.contains("mkfs.ext4 -q -F \"$temp_dev\""));
        assert!(zram.contains("temp_dev=/dev/mapper/sprinters-temp"));
        assert!(!zram.contains("temp_dev=/dev/zram0"));
        assert!(
            script("sprinters:temp=zram", "abc=")
                .unwrap()
                .contains("ZRAM_SIZE=\n")
        );
    }
}
