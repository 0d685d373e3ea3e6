#!/usr/bin/env bash
# Installs the real mail servers that tests/integration/mta.rs runs on loopback ports
# (Debian 12, as root). Idempotent; starts no system service.
#
#   - postfix (with smtp-sink), installed by apt with debconf preseeded to
#     "Local only". Its service is not started (a policy-rc.d that refuses service
#     starts is put in place for the install when the image has none).
#   - exim4-daemon-light and opensmtpd conflict with postfix in dpkg, so they are
#     downloaded and unpacked (dpkg-deb -x) into $MTA_ROOT/exim and
#     $MTA_ROOT/opensmtpd; the shared libraries they link are installed by apt.
#   - The accounts and fixed paths their binaries have compiled in: the users
#     Debian-exim, opensmtpd and opensmtpq, OpenSMTPD's chroot
#     /var/lib/opensmtpd/empty, its spool mount point /var/spool/smtpd (the tests
#     bind-mount a private spool over it), and /usr/libexec/opensmtpd (a symlink to
#     the unpacked helpers, unless the opensmtpd package itself is installed).
#
# Usage: bash .ci/mta-setup.sh        (MTA_ROOT defaults to /opt/smtp-plan-mta)
set -euo pipefail

MTA_ROOT=${MTA_ROOT:-/opt/smtp-plan-mta}
export DEBIAN_FRONTEND=noninteractive
say() { echo "mta-setup: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "mta-setup: must run as root" >&2
  exit 1
fi

# No service may start while packages are installed: use the image's policy-rc.d,
# or put a refusing one in place for the duration of this script.
policy_added=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  policy_added=1
  say "installed a temporary /usr/sbin/policy-rc.d (no service starts)"
fi
cleanup() {
  if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -n "${work:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

updated=
apt_update() {
  if [ -z "$updated" ]; then
    say "apt-get update"
    apt-get update -qq
    updated=1
  fi
}
apt_install() {
  apt_update
  say "apt-get install $*"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Postfix (and smtp-sink), installed.
if ! dpkg-query -W -f '${Status}' postfix 2>/dev/null | grep -q 'install ok installed'; then
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
  apt_install postfix
else
  say "postfix $(dpkg-query -W -f '${Version}' postfix) already installed"
fi

# 2. Exim and OpenSMTPD, unpacked (once: an unpacked binary whose libraries are all
#    found is kept; delete $MTA_ROOT to refresh).
work=$(mktemp -d)
# apt-get download fetches as the _apt user where it can write
chown _apt "$work" 2>/dev/null || chmod 755 "$work"
unpack() { # unpack NAME DIR BINARY
  local name=$1 dir=$2 binary=$3 version deb libs lib missing=()
  if [ -x "$dir/$binary" ] && ! ldd "$dir/$binary" | grep -q 'not found'; then
    say "$name $(cat "$dir/.version" 2>/dev/null) already unpacked in $dir"
    return
  fi
  apt_update
  version=$(apt-cache policy "$name" | awk '/Candidate:/ {print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "mta-setup: no installable version of $name" >&2
    exit 1
  fi
  say "apt-get download $name=$version"
  (cd "$work" && apt-get download -qq "$name=$version")
  deb=$(ls "$work/${name}_"*.deb)
  rm -rf "$dir"
  mkdir -p "$dir"
  dpkg-deb -x "$deb" "$dir"
  echo "$version" >"$dir/.version"
  say "unpacked $name $version into $dir"
  # The shared libraries it links: every lib* (and zlib1g) in its Depends.
  libs=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/[(|].*//; s/ //g' | grep -E '^(lib|zlib)' || true)
  for lib in $libs; do
    dpkg-query -W -f '${Status}' "$lib" 2>/dev/null | grep -q 'install ok installed' || missing+=("$lib")
  done
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  if ldd "$dir/$binary" | grep -q 'not found'; then
    echo "mta-setup: $dir/$binary still misses libraries:" >&2
    ldd "$dir/$binary" | grep 'not found' >&2
    exit 1
  fi
}
unpack exim4-daemon-light "$MTA_ROOT/exim" usr/sbin/exim4
unpack opensmtpd "$MTA_ROOT/opensmtpd" usr/sbin/smtpd

# 3. The accounts and fixed paths the unpacked binaries expect (what the packages'
#    postinst scripts would create).
add_user() { # add_user NAME HOME
  if ! getent passwd "$1" >/dev/null; then
    getent group "$1" >/dev/null || groupadd --system "$1"
    useradd --system --gid "$1" --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
    say "created system user $1"
  fi
}
add_user Debian-exim /var/spool/exim4
add_user opensmtpd /var/lib/opensmtpd/empty
add_user opensmtpq /var/lib/opensmtpd/empty
install -d -o root -g root -m 0755 /var/lib/opensmtpd/empty
install -d -o root -g root -m 0711 /var/spool/smtpd
if [ ! -e /usr/libexec/opensmtpd ]; then
  ln -s "$MTA_ROOT/opensmtpd/usr/libexec/opensmtpd" /usr/libexec/opensmtpd
  say "linked /usr/libexec/opensmtpd to $MTA_ROOT/opensmtpd/usr/libexec/opensmtpd"
fi

say "postfix $(postconf -dh mail_version), smtp-sink $(command -v smtp-sink || echo /usr/sbin/smtp-sink)"
say "exim: $MTA_ROOT/exim/usr/sbin/exim4 ($(cat "$MTA_ROOT/exim/.version"))"
say "opensmtpd: $MTA_ROOT/opensmtpd/usr/sbin/smtpd ($(cat "$MTA_ROOT/opensmtpd/.version"))"
say "done; no service was started"
