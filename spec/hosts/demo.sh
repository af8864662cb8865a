#!/usr/bin/env bash
# make demo: boot a throwaway Debian 12 (or 13) test host, apply a profile to it for
# real with build/phanes, apply it again to show that nothing changes, print
# `phanes status`, and tear the host down.
#
#   KEEP=1          leave the host up and print how to reach it
#   DEMO_SUITE      bookworm (Debian 12, default) or trixie (Debian 13)
#   DEMO_PROFILE    profile to apply (default: dev)
#   DEMO_CONFIG     config file (default: examples/config.yaml)
#   DEMO_HOST       test host index (default: 1)
#   PHANES          the binary (default: build/phanes)
#
# phanes runs from here with --remote: it uploads itself and runs on the
# host, with a private HOME whose ~/.ssh holds the harness key and the host's
# known_hosts (this machine's own ~/.ssh is not touched).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
TH=$ROOT/spec/hosts/testhost
PHANES=${PHANES:-$ROOT/build/phanes}
PROFILE=${DEMO_PROFILE:-dev}
CONFIG=${DEMO_CONFIG:-$ROOT/examples/config.yaml}
HOST=${DEMO_HOST:-1}
KEEP=${KEEP:-0}
export PHANES_TEST_SUITE=${DEMO_SUITE:-${PHANES_TEST_SUITE:-bookworm}}
case $PHANES_TEST_SUITE in
  bookworm) RELEASE="Debian 12" ;;
  trixie) RELEASE="Debian 13" ;;
  *) printf 'demo: DEMO_SUITE must be bookworm (Debian 12) or trixie (Debian 13), not %s\n' "$PHANES_TEST_SUITE" >&2; exit 2 ;;
esac

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then B=$'\e[1m' R=$'\e[31m' G=$'\e[32m' Y=$'\e[33m' N=$'\e[0m'; else B= R= G= Y= N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
fail() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

# -- what the demo needs ------------------------------------------------------
[[ $(id -u) -eq 0 ]] || fail "needs root: it boots a throwaway $RELEASE host in its own namespaces (a bridge, a veth, an overlay mount, all removed afterwards). Run: sudo make demo"
unshare --pid --fork --mount --uts --ipc --net --cgroup true 2>/dev/null ||
  fail "this machine does not allow new namespaces (pid, mount, uts, ipc, net, cgroup); run the demo as root on a Debian 12 machine or VM, not inside an unprivileged container"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || fail "overlayfs is not available (modprobe overlay)"
[[ -x $PHANES ]] || fail "$PHANES is missing: build it first (make)"
[[ -f $CONFIG ]] || fail "config $CONFIG not found (set DEMO_CONFIG=path/to/config.yaml)"

t0=$SECONDS
cleanup() {
  local rc=$?
  if [[ $KEEP == 1 && $rc -eq 0 ]]; then
    local ip key pre=
    ip=$("$TH" ip "$HOST"); key=$("$TH" ssh-key)
    [[ ${PHANES_TEST_ID:-pht} == pht ]] || pre="PHANES_TEST_ID=$PHANES_TEST_ID "
    [[ $PHANES_TEST_SUITE == bookworm ]] || pre="${pre}PHANES_TEST_SUITE=$PHANES_TEST_SUITE "
    printf '\n%sThe host stays up (KEEP=1).%s Reach it with:\n' "$B" "$N"
    printf '  ssh -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@%s\n' "$key" "$ip"
    printf '  (or: %s%s ssh %s;  users deploy and alice too; alice'\''s sudo password: %s%s password)\n' "$pre" "$TH" "$HOST" "$pre" "$TH"
    printf 'Remove it with: %s%s down\n' "$pre" "$TH"
  else
    step "tearing the test host down"
    "$TH" down "$HOST" || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "booting test host $HOST ($RELEASE, systemd, sshd; first time builds the base: ~1 min)"
"$TH" up "$HOST"
IP=$("$TH" ip "$HOST")
KEY=$("$TH" ssh-key)
# phanes drives the host from here over SSH (it uploads itself and runs
# there), with a private HOME holding the harness key and the host's key.
DEMO_HOME=$(mktemp -d /tmp/phanes-demo-home.XXXXXX)
trap 'rc=$?; rm -rf "$DEMO_HOME"; (exit $rc); cleanup' EXIT
mkdir -m 700 "$DEMO_HOME/.ssh"
cp "$KEY" "$DEMO_HOME/.ssh/id_ed25519"; cp "$KEY.pub" "$DEMO_HOME/.ssh/id_ed25519.pub"
"$TH" known-hosts "$HOST" >"$DEMO_HOME/.ssh/known_hosts"
# The admin user the config creates logs in with the harness key too.
SET_KEY="ssh_public_key=$(cat "$KEY.pub")"
ADMIN=$(sed -n 's/^username:[[:space:]]*"\{0,1\}\([a-z_][a-z0-9_-]*\).*/\1/p' "$CONFIG" | head -n 1)
phanes_on() { local login=$1; shift; HOME=$DEMO_HOME "$PHANES" --remote "$login@$IP" "$@"; }

step "phanes --remote root@$IP apply $PROFILE (first run: uploads phanes, installs and configures)"
t1=$SECONDS
phanes_on root apply "$PROFILE" --config "$CONFIG" --set "$SET_KEY"
printf '%sfirst run: %d s%s\n' "$G" $((SECONDS - t1)) "$N"

# The security module turned root login off: from now on, the admin user
# logs in with its key and phanes runs through sudo.
step "phanes --remote ${ADMIN:-root}@$IP apply $PROFILE again (nothing should change)"
t1=$SECONDS
out=$(phanes_on "${ADMIN:-root}" apply "$PROFILE" --config "$CONFIG" --set "$SET_KEY" 2>&1) || { printf '%s\n' "$out"; fail "second run failed"; }
printf '%s\n' "$out"
if grep -qiE '(^|[^a-z])changed[^a-z0-9]*[1-9]|would change' <<<"$out"; then
  printf '%ssecond run reported changes: the profile is not idempotent%s\n' "$Y" "$N"
else
  printf '%ssecond run: %d s, no changes%s\n' "$G" $((SECONDS - t1)) "$N"
fi

step "phanes --remote ${ADMIN:-root}@$IP status"
phanes_on "${ADMIN:-root}" status

printf '\n%sdemo done in %d s%s\n' "$G" $((SECONDS - t0)) "$N"
