# myroute — build, test, install.
#   make            release build with TLS (target/release/myroute)
#   make test       lint, unit tests (with and without TLS), end-to-end tests
#                   against real MariaDB servers
#   make lint       cargo fmt --check and cargo clippy -D warnings, both builds
#   make static     statically linked, stripped x86_64 musl binary, with TLS
#   make minimal    the same without TLS (--no-default-features):
#                   target/minimal/x86_64-unknown-linux-musl/release/myroute
#   make install    PREFIX=/usr/local DESTDIR= : binary, man pages, systemd
#                   unit and the example configuration
#   make demo       the proxy in front of local MariaDB servers, routing shown
#   make bench      myroute against direct and HAProxy (bench/results.md)
#   make fuzz       every fuzz target for FUZZ_SECONDS each (default 60)
#   make clean

PREFIX  ?= /usr/local
DESTDIR ?=
CARGO   ?= cargo
PYTHON  ?= python3
MUSL    := x86_64-unknown-linux-musl
BIN     := target/release/myroute
STATIC  := target/$(MUSL)/release/myroute
# The build without TLS keeps its own target directory, so its binary never
# replaces the default one.
MINIMAL := target/minimal/$(MUSL)/release/myroute

.PHONY: all release test lint unit e2e deps static minimal musl install demo bench fuzz clean

all: release

release:
	$(CARGO) build --release --locked

# Everything: installs what is missing, fails loudly, never skips.
test: deps lint unit e2e

lint:
	@$(CARGO) clippy --version >/dev/null 2>&1 && $(CARGO) fmt --version >/dev/null 2>&1 \
		|| rustup component add clippy rustfmt
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --no-default-features -- -D warnings

deps:
	bash tests/setup-deps.sh

unit:
	$(CARGO) test --locked
	$(CARGO) test --locked --no-default-features --lib --bins

e2e: release
	$(CARGO) build --release --locked --example rust_client
	MYROUTE_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest tests/e2e -q -p no:cacheprovider

# The musl target, and musl-gcc for ring's C and assembly.
musl:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	@command -v musl-gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq musl-tools; }

static: musl
	$(CARGO) build --release --locked --target $(MUSL)
	@! readelf -d $(STATIC) | grep -q NEEDED || { echo "$(STATIC) links shared libraries" >&2; exit 1; }
	@! readelf -l $(STATIC) | grep -q INTERP || { echo "$(STATIC) needs a dynamic loader" >&2; exit 1; }
	@ls -l $(STATIC)

minimal: musl
	$(CARGO) build --release --locked --target $(MUSL) --no-default-features --target-dir target/minimal
	@! readelf -d $(MINIMAL) | grep -q NEEDED || { echo "$(MINIMAL) links shared libraries" >&2; exit 1; }
	@ls -l $(MINIMAL)

install: release
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/myroute
	install -D -m 0644 man/myroute.8 $(DESTDIR)$(PREFIX)/share/man/man8/myroute.8
	install -D -m 0644 man/myroute.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/myroute.conf.5
	install -D -m 0644 myroute.conf.example $(DESTDIR)$(PREFIX)/share/doc/myroute/myroute.conf.example
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/bin/myroute|$(PREFIX)/bin/myroute|g' dist/myroute.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/myroute.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/myroute.service

demo: release
	bash tests/setup-deps.sh
	MYROUTE_BIN=$(CURDIR)/$(BIN) $(PYTHON) tests/demo.py

bench: release
	bash bench/run.sh

fuzz:
	bash fuzz/run.sh

clean:
	$(CARGO) clean
	rm -rf tests/clients/node_modules
