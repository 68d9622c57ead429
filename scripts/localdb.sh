#!/usr/bin/env bash
# Finds or starts a PostgreSQL server for development and CI, and prints
# shell exports for it (eval "$(scripts/localdb.sh)"):
#   DATABASE_URL             the authd database (created if missing)
#   AUTHD_TEST_DATABASE_URL  a superuser URL the tests create databases with
# In order: $DATABASE_URL if set (its database created if missing); a
# server on 127.0.0.1:5432 that lets user postgres in; the machine's Debian
# cluster (started if stopped, when run as root); else a private throwaway
# cluster in .dev/pg on port 54329, made from the installed PostgreSQL
# binaries. Messages go to stderr; passwords are never printed.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "localdb: $*" >&2; }

db_name=${AUTHD_DB_NAME:-authd}

pgbin() { # locate a PostgreSQL program on PATH or in Debian's versioned dirs
	if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
	ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}
PSQL=$(pgbin psql)

can_connect() { "$PSQL" "$1" -Atqc 'select 1' >/dev/null 2>&1; }

if [ -n "${DATABASE_URL:-}" ]; then
	say "using DATABASE_URL from the environment"
	# A database that does not exist yet is created through the same
	# server's database postgres, with the same credentials.
	if [ -n "$PSQL" ] && ! err=$("$PSQL" "$DATABASE_URL" -Atqc 'select 1' 2>&1 >/dev/null); then
		case $DATABASE_URL in
		postgres://*/* | postgresql://*/*)
			if [[ $err == *"database \""*"\" does not exist"* ]]; then
				path=${DATABASE_URL%%\?*}
				query=${DATABASE_URL:${#path}}
				db=${path##*/}
				if "$PSQL" "${path%/*}/postgres$query" -qc "create database \"$db\"" >&2; then
					say "created database $db"
				else
					# The server's superuser can: say how, owned by
					# DATABASE_URL's user, without its password.
					authority=${path#*://}
					authority=${authority%%/*}
					user=postgres
					if [[ $authority == *@* ]]; then
						user=${authority%@*}
						user=${user%%:*}
						authority=${authority##*@}
					fi
					host=${authority%:*} port=5432
					[[ $authority == *:* ]] && port=${authority##*:}
					say "database $db does not exist, and DATABASE_URL's user $user may not create it; as the server's superuser, run:"
					case $host in
					127.0.0.1 | localhost | "[::1]") say "  sudo -u postgres createdb -p $port -O $user $db" ;;
					*) say "  createdb -h $host -p $port -U postgres -O $user $db" ;;
					esac
					exit 1
				fi
			else
				say "cannot connect with DATABASE_URL: $err"
				exit 1
			fi
			;;
		*)
			say "cannot connect with DATABASE_URL: $err"
			exit 1
			;;
		esac
	fi
	echo "export DATABASE_URL='$DATABASE_URL'"
	[ -n "${AUTHD_TEST_DATABASE_URL:-}" ] && echo "export AUTHD_TEST_DATABASE_URL='$AUTHD_TEST_DATABASE_URL'"
	exit 0
fi

[ -n "$PSQL" ] || { say "psql not found: install PostgreSQL (apt-get install postgresql)"; exit 1; }

emit() { # $1 = superuser URL of database postgres
	local admin=$1 base=${1%/postgres*}
	local query=${1##*/postgres}
	if ! "$PSQL" "$admin" -Atqc "select 1 from pg_database where datname = '$db_name'" | grep -q 1; then
		"$PSQL" "$admin" -qc "create database \"$db_name\"" >&2
		say "created database $db_name"
	fi
	echo "export DATABASE_URL='$base/$db_name$query'"
	echo "export AUTHD_TEST_DATABASE_URL='$admin'"
}

shared="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
# AUTHD_DEV_PRIVATE_PG=1 skips straight to the private cluster.
if [ -z "${AUTHD_DEV_PRIVATE_PG:-}" ] && can_connect "$shared"; then
	say "using the server on 127.0.0.1:5432"
	emit "$shared"
	exit 0
fi

# As root on a Debian machine with a cluster: start it (the command this
# machine's services are started with).
if [ -z "${AUTHD_DEV_PRIVATE_PG:-}" ] && [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
	ver=$(ls /etc/postgresql | sort -V | tail -n 1)
	if [ -n "$ver" ]; then
		say "starting the Debian cluster $ver/main"
		pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
		for _ in $(seq 1 30); do can_connect "$shared" && break; sleep 0.5; done
		if can_connect "$shared"; then emit "$shared"; exit 0; fi
	fi
fi

# A private cluster: trust auth, loopback only, data in .dev/pg.
INITDB=$(pgbin initdb); PG_CTL=$(pgbin pg_ctl)
[ -n "$INITDB" ] && [ -n "$PG_CTL" ] || { say "no reachable server and no initdb/pg_ctl to start one"; exit 1; }
port=${AUTHD_DEV_PG_PORT:-54329}
data=$PWD/.dev/pg
private="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
as_owner=()
if [ "$(id -u)" = 0 ]; then as_owner=(runuser -u postgres --); fi # initdb refuses root
if ! can_connect "$private"; then
	mkdir -p "$data"
	[ "$(id -u)" = 0 ] && chown postgres "$data"
	if [ ! -f "$data/PG_VERSION" ]; then
		say "creating a private cluster in $data"
		"${as_owner[@]}" "$INITDB" -D "$data" -U postgres -A trust >/dev/null
	fi
	say "starting the private cluster on 127.0.0.1:$port"
	"${as_owner[@]}" "$PG_CTL" -D "$data" -l "$data/server.log" -w \
		-o "-p $port -k $data -c listen_addresses=127.0.0.1" start >&2
fi
can_connect "$private" || { say "private cluster did not come up; see $data/server.log"; exit 1; }
emit "$private"
