# authd — the two commands a fresh machine needs:
#   make run    serve on :3001 against a local PostgreSQL, with demo data
#   make test   test deps if missing, vet, race-enabled tests (fuzz seed corpora included)
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 1m
BENCH_DURATION ?= 10s
SOAK_DURATION ?= 30m

.PHONY: run test test-deps bench bench-nats soak fuzz build clean-dev

# build records the git revision for `authd version` even where GOFLAGS
# says -buildvcs=false.
build:
	$(GO) build -buildvcs=auto -o bin/authd ./cmd/authd

# run: DATABASE_URL if set (its database created if missing), else a local
# server, else a private cluster in .dev/pg; migrate, add the demo user,
# and serve. A dev JWT secret is made once and kept in .dev/jwt_secret
# unless JWT_SECRET is set. It serves plain HTTP, so its cookies lack
# Secure (AUTHD_COOKIE_SECURE=false unless set). (The assignment, unlike
# eval "$(…)" alone, stops here when localdb.sh fails.)
run: build
	@set -euo pipefail; \
	db_env=$$(scripts/localdb.sh); eval "$$db_env"; \
	if [ -z "$${JWT_SECRET:-}$${PGRST_JWT_SECRET:-}" ]; then \
		mkdir -p .dev; \
		[ -s .dev/jwt_secret ] || head -c 32 /dev/urandom | base64 > .dev/jwt_secret; \
		export JWT_SECRET="$$(cat .dev/jwt_secret)" JWT_SECRET_IS_BASE64=true; \
		echo "dev JWT secret (base64, share it with PostgREST as PGRST_JWT_SECRET): $$JWT_SECRET"; \
	fi; \
	export AUTHD_COOKIE_SECURE="$${AUTHD_COOKIE_SECURE:-false}"; \
	bin/authd migrate up; \
	bin/authd seed; \
	echo; \
	echo "Log in as demo/demo:"; \
	echo "  curl -i -H 'Content-Type: application/json' -d '{\"user_\": \"demo\", \"pass\": \"demo\"}' http://localhost:$$(addr=$${AUTHD_ADDR:-:3001}; echo $${addr##*:})/rpc/login"; \
	echo; \
	exec bin/authd serve

# test-deps installs the real gateways (and browser) the tests drive, when
# missing: as root with apt-get, otherwise it prints the command.
test-deps:
	scripts/test-deps.sh

# test: AUTHD_TEST_DATABASE_URL if set, else the server `make run` finds
# or starts (scripts/localdb.sh; DATABASE_URL, an application's URL, is
# not a test server's).
test: test-deps
	$(GO) vet ./...
	@set -euo pipefail; \
	if [ -z "$${AUTHD_TEST_DATABASE_URL:-}" ]; then \
		db_env=$$(env -u DATABASE_URL -u DATABASE_URL_FILE scripts/localdb.sh); eval "$$db_env"; \
	fi; \
	export AUTHD_TEST_DATABASE_URL; \
	server=$${AUTHD_TEST_DATABASE_URL%%\?*}; echo "tests create their databases on $${server##*@}"; \
	$(GO) test -race -count=1 ./...

# fuzz: run each fuzz target of the module for FUZZTIME, one after
# another (not part of test; the seed corpora in testdata/fuzz run in
# every `make test`). scripts/fuzz.sh finds the targets.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench:
	$(GO) run ./cmd/authd-bench -duration $(BENCH_DURATION)

soak:
	$(GO) run ./cmd/authd-soak -duration $(SOAK_DURATION)

# bench-nats: NATS connections through the auth callout, token and password.
bench-nats:
	$(GO) test -run '^$$' -bench Connect -benchtime 3s ./natsauth

# clean-dev stops and removes the private cluster that `make run` may have made.
clean-dev:
	@if [ -f .dev/pg/postmaster.pid ]; then \
		if [ "$$(id -u)" = 0 ]; then runuser -u postgres -- pg_ctl -D .dev/pg stop -m fast; else pg_ctl -D .dev/pg stop -m fast; fi; \
	fi
	rm -rf .dev bin
