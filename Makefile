# myroute — build, test, install.
#   make            release build (target/release/myroute)
#   make test       unit tests + end-to-end tests against real MariaDB servers
#   make static     statically linked, stripped x86_64 musl binary
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

.PHONY: all release test unit e2e deps static install demo bench fuzz clean

all: release

release:
	$(CARGO) build --release --locked

# Everything: installs what is missing, fails loudly, never skips.
test: deps unit e2e

deps:
	bash tests/setup-deps.sh

unit:
	$(CARGO) test --locked

e2e: release
	$(CARGO) build --release --locked --example rust_client
	MYROUTE_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest tests/e2e -q -p no:cacheprovider

static:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	$(CARGO) build --release --locked --target $(MUSL)
	@! readelf -d $(STATIC) | grep -q NEEDED || { echo "$(STATIC) links shared libraries" >&2; exit 1; }
	@! readelf -l $(STATIC) | grep -q INTERP || { echo "$(STATIC) needs a dynamic loader" >&2; exit 1; }
	@ls -l $(STATIC)

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
