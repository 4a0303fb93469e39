#!/bin/sh
# Starts one container of a simulated pod the way the kubelet and a container runtime
# would, for SimulatedPodTests:
#   - in the pod's network namespace (all containers of a pod share one loopback),
#   - in a mount namespace of its own, with the pod's volumes mounted at their mountPaths
#     (under a fresh /mnt, and over /tmp), read-only ones read-only, and the root
#     filesystem read-only when the container asks for readOnlyRootFilesystem,
#   - as the pod's uid/gid with fsGroup as its only supplementary group, no capabilities
#     (drop: ALL) and no_new_privs (allowPrivilegeEscalation: false),
#   - with exactly the environment it was started with (the container's env).
# Each step execs the next, so the started process is the container's process and gets
# the kubelet's signals directly.
#
#   pod_container.sh NETNS UID GID FSGROUP READONLY_ROOT MOUNTS -- COMMAND [ARG...]
#   MOUNTS: space-separated HOST_DIR:MOUNT_PATH[:ro]; READONLY_ROOT: true|false
set -eu
if [ "$1" != --inside ]; then
    netns=$1
    shift
    exec /usr/sbin/ip netns exec "$netns" /usr/bin/unshare --mount --propagation private -- "$0" --inside "$@"
fi
shift
uid=$1 gid=$2 fsgroup=$3 readonly_root=$4 mounts=$5
shift 5
[ "$1" = -- ] && shift

/bin/mount -t tmpfs -o mode=0755 pod-mnt /mnt
for spec in $mounts; do
    host=${spec%%:*}
    rest=${spec#*:}
    target=${rest%%:*}
    mode=${rest#"$target"}
    case "$target" in /mnt/*) /bin/mkdir -p "$target" ;; esac
    /bin/mount --bind "$host" "$target"
    [ "$mode" = ":ro" ] && /bin/mount -o remount,bind,ro "$target"
done
[ "$readonly_root" = true ] && /bin/mount -o remount,bind,ro /
# The images' working directory; the test's own is not the container's.
cd /
exec /usr/bin/setpriv --reuid "$uid" --regid "$gid" --groups "$fsgroup" \
    --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs -- "$@"
