#!/usr/bin/env bash
# Installs what the gateway and browser tests need, if it is missing
# (Debian bookworm):
#   caddy, nginx      real gateways for deploy/gateway_test.go
#   pgbouncer         a real transaction-mode pooler for cmd/authd's
#                     pooler_test.go (AUTHD_DB_POOLER=transaction)
#   chromium          Debian's browser, driven by deploy/browser_test.go
#   node, npm         to run deploy/e2e/*.mjs (Debian's nodejs and npm
#                     packages when node is missing; a Node.js that ships its
#                     own npm is kept). Node.js 18, bookworm's, is enough:
#                     package.json's engines say >=18.
#   playwright-core   from npm, the exact version in package-lock.json, into
#                     ./node_modules with `npm ci` (it downloads no browser:
#                     the test points it at /usr/bin/chromium)
#   jose              from npm the same way: the independent JWT verifier of
#                     deploy/jose_test.go (deploy/e2e/jose-verify.mjs)
#   .dev/node18       Debian bookworm's own Node.js 18 (packages nodejs and
#                     libnode108, and those of their libraries that are not
#                     installed), fetched with `apt-get download` and
#                     unpacked with `dpkg -x`, never installed: whatever node
#                     this machine has, deploy/node18_test.go runs the e2e
#                     scripts on the Node.js a fresh bookworm has. About
#                     11 MB to download, 46 MB unpacked (libnode.so is 45 MB;
#                     more where libuv1, libc-ares2 or libicu72 are missing).
#                     It reads its built-in undici, acorn and
#                     cjs-module-lexer from /usr/share/nodejs, so the small
#                     packages node-undici, node-acorn and
#                     node-cjs-module-lexer (0.5 MB) are installed when
#                     missing (a bookworm with Debian's nodejs has them).
#   .dev/bin/goose    the stock goose CLI, at the version go.mod requires,
#                     for cmd/authd's TestGooseCLI (authd's migrations must
#                     run under it too). Built with `go install` outside
#                     this module, so cmd/goose's requirements (drivers for
#                     a dozen databases) stay out of go.mod; its build tags
#                     leave out every driver but postgres: 8 MB of module
#                     zips (46 MB unpacked), nearly all of them pgx and
#                     golang.org/x/text, which the tests fetch anyway. Any
#                     user can build it; no root needed.
# Idempotent and quick when everything is there: it only looks for the
# programs, the files, the installed npm versions and the goose module
# version recorded in .dev/bin/goose (`go version -m`). As root it runs
# `apt-get update` once and `apt-get install -y --no-install-recommends ...`;
# otherwise it prints that command and exits 1.
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

# The stock goose CLI, built once into .dev/bin and again only when go.mod
# requires another goose. The tags are cmd/goose's own (driver_*.go) for
# leaving out the drivers that need cgo or large modules.
goose_bin=.dev/bin/goose
goose_tags='no_clickhouse no_libsql no_mssql no_mysql no_sqlite3 no_vertica no_ydb'
GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || { say "$GO (the Go toolchain) is missing: it builds $goose_bin"; exit 1; }
goose_want=$("$GO" list -m -f '{{.Version}}' github.com/pressly/goose/v3)
# Empty when the binary is missing or not a goose built from a module.
goose_have=$("$GO" version -m "$goose_bin" 2>/dev/null |
	awk '$1 == "mod" && $2 == "github.com/pressly/goose/v3" { print $3 }') || true
if [ "$goose_have" != "$goose_want" ]; then
	say "building goose $goose_want into $goose_bin${goose_have:+ (was $goose_have)}"
	# go install will not overwrite a file that is not a Go binary.
	rm -f "$goose_bin"
	# pkg@version builds outside this module: a -mod=vendor in GOFLAGS
	# would stop it.
	GOBIN="$PWD/.dev/bin" GOFLAGS=-mod=mod "$GO" install -tags "$goose_tags" \
		"github.com/pressly/goose/v3/cmd/goose@$goose_want"
fi

# Debian packages, as "program:package". The program is what the tests
# exec.LookPath; the package is what provides it.
apt_needs=(
	caddy:caddy
	nginx:nginx
	pgbouncer:pgbouncer
	chromium:chromium
	node:nodejs
	npm:npm
)
# Files that only a package provides, as "file:package": what Debian's
# libnode108 loads at start from fixed paths (it aborts without them).
apt_files=(
	/usr/share/nodejs/undici/undici-fetch.js:node-undici
	/usr/share/nodejs/acorn/dist/acorn.js:node-acorn
	/usr/share/nodejs/acorn-walk/dist/walk.js:node-acorn
	/usr/share/nodejs/cjs-module-lexer/lexer.js:node-cjs-module-lexer
	/usr/share/nodejs/cjs-module-lexer/dist/lexer.js:node-cjs-module-lexer
)
# npm packages for the browser and jose tests, installed into the
# repository's node_modules (not global) from package-lock.json; if any is
# missing, or not the version the lockfile names, the whole lockfile is
# installed again with `npm ci`.
npm_needs=(playwright-core jose)
# The oldest Node.js the e2e scripts and their npm packages support
# (package.json's engines): Debian bookworm's.
node_min=18
# Debian's Node.js 18 for deploy/node18_test.go.
node18_dir=.dev/node18

missing_pkgs=()
for pair in "${apt_needs[@]}"; do
	prog=${pair%%:*} pkg=${pair#*:}
	have "$prog" && continue
	# Without node, npm waits: a Node.js from another apt source (such as
	# NodeSource's) ships npm itself and conflicts with Debian's npm.
	[ "$prog" = npm ] && ! have node && continue
	missing_pkgs+=("$pkg")
done
for pair in "${apt_files[@]}"; do
	file=${pair%%:*} pkg=${pair#*:}
	[ -e "$file" ] && continue
	[[ " ${missing_pkgs[*]} " == *" $pkg "* ]] || missing_pkgs+=("$pkg")
done

# lock_version PKG: the version package-lock.json pins; installed_version
# PKG: the one in node_modules (empty when not there).
lock_version() {
	sed -n '/"node_modules\/'"$1"'": {/,/}/s/^ *"version": "\([^"]*\)".*/\1/p' package-lock.json | head -n 1
}
installed_version() {
	[ -f "node_modules/$1/package.json" ] || return 0
	sed -n 's/^ *"version": "\([^"]*\)".*/\1/p' "node_modules/$1/package.json" | head -n 1
}
missing_npm=()
for pkg in "${npm_needs[@]}"; do
	want=$(lock_version "$pkg")
	[ -n "$want" ] || { say "package-lock.json pins no $pkg"; exit 1; }
	[ "$(installed_version "$pkg")" = "$want" ] || missing_npm+=("$pkg")
done

# node18_ok: .dev/node18 holds a Debian Node.js 18 that starts (and so
# finds its built-ins in /usr/share/nodejs: --version alone would not load
# them).
node18_ok() {
	[ -s "$node18_dir/VERSION" ] && [ -x "$node18_dir/bin/node" ] &&
		[[ "$(LD_LIBRARY_PATH="$node18_dir/lib" "$node18_dir/bin/node" -p process.version 2>/dev/null)" == v18.* ]]
}
need_node18=
node18_ok || need_node18=1

# The node found must be one the npm packages support.
if have node; then
	node_major=$(node --version | sed -n 's/^v\([0-9]*\)\..*/\1/p')
	if [ -z "$node_major" ] || [ "$node_major" -lt "$node_min" ]; then
		say "node $(node --version) ($(command -v node)) is older than package.json's engines allow (>=$node_min): install Debian bookworm's nodejs (18) or later"
		exit 1
	fi
fi

if [ ${#missing_pkgs[@]} -eq 0 ] && [ ${#missing_npm[@]} -eq 0 ] && [ -z "$need_node18" ]; then
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
		case $pkg in nginx | caddy | pgbouncer) ;; *) continue ;; esac
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
		[ "$(installed_version "$pkg")" = "$(lock_version "$pkg")" ] ||
			{ say "node_modules/$pkg is not package-lock.json's $(lock_version "$pkg") after npm ci"; exit 1; }
	done
fi

for pair in "${apt_needs[@]}"; do
	prog=${pair%%:*}
	have "$prog" || { say "$prog still missing after install"; exit 1; }
done
for pair in "${apt_files[@]}"; do
	file=${pair%%:*}
	[ -e "$file" ] || { say "$file still missing after install"; exit 1; }
done

# Debian's Node.js 18, unpacked and never installed: the highest version
# 18 of nodejs the apt sources offer (whatever node is installed), libnode108
# of the same version, and those of libnode108's libraries (libuv1,
# libc-ares2, ...) that are not installed (its node-* dependencies are the
# files in /usr/share/nodejs, installed above). node goes to
# .dev/node18/bin, the shared libraries to .dev/node18/lib; run it with
#   LD_LIBRARY_PATH=.dev/node18/lib .dev/node18/bin/node
# Debian's own builds are the +dfsg versions (not, say, NodeSource's).
node18_version() {
	apt-cache madison nodejs 2>/dev/null | awk -F' *[|] *' '$2 ~ /^18\..*[+]dfsg/ { print $2 }' | sort -V | tail -n 1
}
if [ -n "$need_node18" ]; then
	version=$(node18_version)
	if [ -z "$version" ]; then
		if [ "$(id -u)" != 0 ]; then
			say "apt knows no nodejs 18 (Debian bookworm's) to fetch into $node18_dir; as root: apt-get update, then run this again"
			exit 1
		fi
		say "apt knows no nodejs 18: apt-get update"
		apt-get update >&2
		version=$(node18_version)
		[ -n "$version" ] || { say "no nodejs 18 in the apt sources (apt-cache madison nodejs): is this Debian bookworm?"; exit 1; }
	fi
	debs=(nodejs="$version" libnode108="$version")
	while read -r dep; do
		[ "$(dpkg-query -W -f='${db:Status-Status}' "$dep" 2>/dev/null)" = installed ] || debs+=("$dep")
	done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "libnode108=$version" |
		sed -n 's/^ *Depends: \([^ <>]*\)$/\1/p' | grep -v '^node-' | sort -u)
	say "fetching Debian's Node.js $version into $node18_dir (apt-get download ${debs[*]})"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# apt drops root for downloads; let its user write here.
	[ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1 && chown _apt "$tmp"
	(cd "$tmp" && apt-get download "${debs[@]}") >&2
	for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
	rm -rf "$node18_dir"
	mkdir -p "$node18_dir/bin" "$node18_dir/lib"
	cp "$tmp/root/usr/bin/node" "$node18_dir/bin/node"
	find "$tmp/root" -name 'lib*.so*' \( -type f -o -type l \) -exec cp -P {} "$node18_dir/lib/" \;
	printf '%s\n' "$version" >"$node18_dir/VERSION"
	rm -rf "$tmp"
	trap - EXIT
	node18_ok || { say "$node18_dir/bin/node does not start: LD_LIBRARY_PATH=$node18_dir/lib $node18_dir/bin/node -p process.version"; exit 1; }
	say "$node18_dir: Node.js $(LD_LIBRARY_PATH="$node18_dir/lib" "$node18_dir/bin/node" -p process.version) (Debian $version), $(du -sh "$node18_dir" | cut -f1)"
fi
say "ok"
