#!/usr/bin/env bash
# Installs what the gateway and browser tests need, if it is missing
# (Debian bookworm):
#   caddy, nginx      real gateways for deploy/gateway_test.go
#   chromium          Debian's browser, driven by deploy/browser_test.go
#   node, npm         to run deploy/e2e/browser.mjs (nodejs and npm packages
#                     when missing; a Node.js that ships its own npm is kept)
#   playwright-core   from npm, the exact version in package-lock.json, into
#                     ./node_modules with `npm ci` (it downloads no browser:
#                     the test points it at /usr/bin/chromium)
#   jose              from npm the same way: the independent JWT verifier of
#                     deploy/jose_test.go (deploy/e2e/jose-verify.mjs)
# Idempotent and quick when everything is there: it only looks for the
# programs. As root it runs `apt-get update` once and
# `apt-get install -y --no-install-recommends ...`; otherwise it prints that
# command and exits 1.
#
# The packages' own daemons are not wanted: the tests run their own caddy
# and nginx on free 127.0.0.1 ports with private config, pid and log files.
# Installing is done with a temporary policy-rc.d (so Debian does not start
# nginx or caddy on port 80), and anything the install started anyway is
# stopped and disabled.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "test-deps: $*" >&2; }

# have PROGRAM: on PATH, or in the sbin directories a non-root PATH lacks.
have() {
	command -v "$1" >/dev/null 2>&1 && return 0
	local d
	for d in /usr/sbin /usr/local/sbin /sbin; do [ -x "$d/$1" ] && return 0; done
	return 1
}

# Debian packages, as "program:package". The program is what the tests
# exec.LookPath; the package is what provides it.
apt_needs=(
	caddy:caddy
	nginx:nginx
	chromium:chromium
	node:nodejs
	npm:npm
)
# npm packages for the browser and jose tests, installed into the
# repository's node_modules (not global) from package-lock.json; if any is
# missing the whole lockfile is installed again with `npm ci`.
npm_needs=(playwright-core jose)

missing_pkgs=()
for pair in "${apt_needs[@]}"; do
	prog=${pair%%:*} pkg=${pair#*:}
	have "$prog" && continue
	# Without node, npm waits: a Node.js from another apt source (such as
	# NodeSource's) ships npm itself and conflicts with Debian's npm.
	[ "$prog" = npm ] && ! have node && continue
	missing_pkgs+=("$pkg")
done
missing_npm=()
for pkg in "${npm_needs[@]}"; do
	[ -d "node_modules/$pkg" ] || missing_npm+=("$pkg")
done

if [ ${#missing_pkgs[@]} -eq 0 ] && [ ${#missing_npm[@]} -eq 0 ]; then
	exit 0
fi

apt_cmd="apt-get update && apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
npm_cmd="npm ci --ignore-scripts --no-audit --no-fund"
if [ "$(id -u)" != 0 ] && [ ${#missing_pkgs[@]} -gt 0 ]; then
	say "missing Debian packages: ${missing_pkgs[*]}; install them as root:"
	echo "sudo sh -c '$apt_cmd'" >&2
	[ ${#missing_npm[@]} -gt 0 ] && echo "then, here: $npm_cmd" >&2
	exit 1
fi

if [ ${#missing_pkgs[@]} -gt 0 ]; then
	# Keep maintainer scripts from starting the daemons (a policy-rc.d that
	# is already there, as in Docker images, is left alone).
	made_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	say "installing ${missing_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2
	apt-get install -y --no-install-recommends "${missing_pkgs[@]}" >&2
	if ! have npm; then
		say "installing npm"
		apt-get install -y --no-install-recommends npm >&2
	fi
	if [ -n "$made_policy" ]; then
		rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi

	# Nothing we just installed may keep port 80, now or after a reboot.
	for pkg in "${missing_pkgs[@]}"; do
		case $pkg in nginx | caddy) ;; *) continue ;; esac
		if [ -d /run/systemd/system ]; then
			systemctl disable --now "$pkg" >/dev/null 2>&1 || true
		elif command -v service >/dev/null 2>&1; then
			service "$pkg" stop >/dev/null 2>&1 || true
		fi
		if [ "$pkg" = nginx ] && [ -s /run/nginx.pid ]; then
			nginx -s stop >/dev/null 2>&1 || true
		fi
	done
fi

if [ ${#missing_npm[@]} -gt 0 ]; then
	have npm || { say "npm is missing: add nodejs and npm to apt_needs"; exit 1; }
	say "installing npm packages ${missing_npm[*]} (npm ci, from package-lock.json)"
	# No package here needs an install script, and none may fetch a
	# browser build of its own.
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $npm_cmd >&2
	for pkg in "${missing_npm[@]}"; do
		[ -d "node_modules/$pkg" ] || { say "node_modules/$pkg still missing after npm ci"; exit 1; }
	done
fi

for pair in "${apt_needs[@]}"; do
	prog=${pair%%:*}
	have "$prog" || { say "$prog still missing after install"; exit 1; }
done
say "ok"
