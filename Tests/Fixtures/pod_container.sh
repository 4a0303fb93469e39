#!/bin/sh
# Starts one container of a simulated pod the way the kubelet and a container runtime
# would, for SimulatedPodTests:
#   - in the pod's network namespace (all containers of a pod share one loopback),
#   - in a mount namespace of its own, with the pod's volumes mounted at their mountPaths
#     (under a fresh /mnt, or over an existing directory such as /tmp), read-only ones
#     read-only, and every other mount read-only when the container asks for
#     readOnlyRootFilesystem (/proc, /sys and /dev stay as they are, as in a container),
#   - as the pod's uid/gid with fsGroup as its only supplementary group, no capabilities
#     (drop: ALL) and no_new_privs (allowPrivilegeEscalation: false),
#   - with exactly the environment it was started with (the container's env).
# The "image" is the host's file system. IMAGE_PATHS (the checkout, say) stay visible at
# their own paths even when a volume is mounted over a directory holding them (an emptyDir
# at /tmp over a checkout in /tmp). Each step execs the next, so the started process is
# the container's process and gets the kubelet's signals directly.
#
#   pod_container.sh NETNS UID GID FSGROUP READONLY_ROOT MOUNTS IMAGE_PATHS -- COMMAND [ARG...]
#   MOUNTS: space-separated HOST_DIR:MOUNT_PATH[:ro]; IMAGE_PATHS: space-separated
#   directories; READONLY_ROOT: true|false. Paths must not contain spaces or colons.
set -euf
if [ "$1" != --inside ]; then
    netns=$1
    shift
    exec /usr/sbin/ip netns exec "$netns" /usr/bin/unshare --mount --propagation private -- "$0" --inside "$@"
fi
shift
uid=$1 gid=$2 fsgroup=$3 readonly_root=$4 mounts=$5 image_paths=$6
shift 6
[ "$1" = -- ] && shift

# Every source is first bound under a private staging directory, so that mounting one
# volume (over /tmp) cannot hide the source of another, or the image.
/bin/mount -t tmpfs -o mode=0755 pod-mnt /mnt
stage=/mnt/.pod-stage
/bin/mkdir "$stage"
# stage NAME SOURCE BIND-OPTION: SOURCE bound at $stage/NAME.
stage() {
    /bin/mkdir "$stage/$1"
    /bin/mount "$3" "$2" "$stage/$1"
}
n=0
for spec in $mounts; do
    n=$((n + 1))
    stage "volume$n" "${spec%%:*}" --bind
done
n=0
for path in $image_paths; do
    n=$((n + 1))
    stage "image$n" "$path" --rbind
done

targets=""
n=0
for spec in $mounts; do
    n=$((n + 1))
    rest=${spec#*:}
    target=${rest%%:*}
    case "$target" in /mnt/*) /bin/mkdir -p "$target" ;; esac
    /bin/mount --bind "$stage/volume$n" "$target"
    [ "$rest" = "$target:ro" ] && /bin/mount -o remount,bind,ro "$target"
    targets="$targets $target"
done
n=0
for path in $image_paths; do
    n=$((n + 1))
    [ -d "$path" ] || /bin/mkdir -p "$path"
    /bin/mount --rbind "$stage/image$n" "$path"
done
for staged in $(/bin/ls "$stage"); do
    /bin/umount -R "$stage/$staged"
    /bin/rmdir "$stage/$staged"
done
/bin/rmdir "$stage"

if [ "$readonly_root" = true ]; then
    # Every mount but the volumes and the kernel's file systems becomes read-only; the
    # image's paths too, even where they sit under a writable volume (a checkout in /tmp).
    mounts_now=$(/usr/bin/awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $5, $(i + 1); break } }' \
        /proc/self/mountinfo)
    while read -r point fstype; do
        case "$point" in /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;; esac
        # Remounting an automount point would trigger it; none holds the image.
        [ "$fstype" = autofs ] && continue
        case "$point" in *\\*)
            echo "pod_container: left writable: mount point with escaped characters $point" >&2
            continue
            ;;
        esac
        # A mount hidden under another (the host's own under /mnt) is out of reach anyway.
        [ -e "$point" ] || continue
        writable=false
        for target in $targets; do
            case "$point" in "$target" | "$target"/*) writable=true ;; esac
        done
        for path in $image_paths; do
            case "$point" in "$path" | "$path"/*) writable=false ;; esac
        done
        $writable || /bin/mount -o remount,bind,ro "$point"
    done <<EOF
$mounts_now
EOF
fi
# The image's working directory; the test's own is not the container's.
cd /
exec /usr/bin/setpriv --reuid "$uid" --regid "$gid" --groups "$fsgroup" \
    --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs -- "$@"
