# pictl — the README's two commands are `make demo` and `make test`.
# Everything a fresh Debian 12 machine needs is installed by `make deps`.

GO       ?= go
BIN      := bin/pictl
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Test timeout for the whole run (the QEMU boots are sequential inside it).
TEST_TIMEOUT ?= 18m

# Debian packages the tests, benchmarks and demo use (real peers: udhcpc,
# dhclient, curl/tftp-hpa, tftpd-hpa, kea, QEMU + iPXE, the kernel NFS client
# inside QEMU guests, systemd-analyze, nginx...).
DEBS := ca-certificates curl iproute2 procps kmod cpio xz-utils zstd \
        qemu-system-x86 qemu-user-static ipxe-qemu busybox-static \
        udhcpc isc-dhcp-client kea-admin kea-dhcp4-server dnsmasq-base \
        tftp-hpa tftpd-hpa \
        libnfs-utils \
        dosfstools mtools e2fsprogs fdisk debootstrap \
        systemd nginx-light haproxy keepalived nftables frr

# haproxy, keepalived, nftables and frr: the roles tests hand the lb and
# router configs to their check modes (the daemons never start: policy-rc.d).

# Only the benchmarks need these competitors.
BENCH_DEBS := nfs-ganesha nfs-ganesha-vfs rpcbind wrk haproxy

# pjdfstest (../shared/third_party) is built statically from source.
PJDFSTEST_DEBS := autoconf automake gcc make nfs-ganesha nfs-ganesha-vfs rpcbind

.PHONY: all build test unit lint deps bench-deps pjdfstest-deps pjdfstest bench demo lab fuzz clean

all: build

# The controller places the node's-arch build in every role layer as the
# agent (bin/pictl itself serves amd64 nodes): agent and controller are
# always the same version.
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pictl
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)-linux-arm64 ./cmd/pictl
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)-linux-armhf ./cmd/pictl

# deps is idempotent: it installs only what is missing. Daemons in these
# packages are kept from starting (policy-rc.d): tests run their own copies
# inside network namespaces.
deps: PKGS = $(DEBS)
bench-deps: PKGS = $(DEBS) $(BENCH_DEBS)
pjdfstest-deps: PKGS = $(DEBS) $(PJDFSTEST_DEBS)
deps bench-deps pjdfstest-deps:
	@missing=$$(for p in $(PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing $$missing"; \
		[ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; touch .policy-rc.d.ours; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; rc=$$?; \
		[ -e .policy-rc.d.ours ] && rm -f /usr/sbin/policy-rc.d .policy-rc.d.ours; \
		exit $$rc; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# The agent ships to 32-bit Pis: the armhf build must keep compiling.
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -o /dev/null ./cmd/pictl

# unit: everything that needs no root and no QEMU (fast feedback).
unit:
	$(GO) test -short -count=1 ./...

test: deps lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 1 ./...

# fuzz: run each fuzz target for FUZZTIME (development, not CI).
FUZZTIME ?= 60s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# bench: side-by-side comparisons with the best existing tools; prints tables.
bench: bench-deps build
	@for b in test/bench/*/run.sh; do [ -x "$$b" ] || continue; echo "== $$b"; "$$b" || exit 1; done

# pjdfstest: every pjdfstest script in one QEMU guest on a pictl node root,
# a pictl volume and nfs-ganesha side by side, with the assertions that pass
# on ganesha but not on pictl listed (15-30 minutes under TCG; results
# in nfsd/PJDFSTEST.md); PICTL_PJDFSTEST_TESTS="chmod/*.t" runs a subset
# (about 70 s), PICTL_PJDFSTEST_FS=node-root,volume leaves ganesha out.
pjdfstest: pjdfstest-deps
	PICTL_PJDFSTEST=1 $(GO) test -count=1 -timeout 180m -run '^TestPjdfstest$$' -v ./test/nfsroot

# demo: two QEMU machines netboot from pictl in a private network namespace
# (artefacts cached in .cache/ after the first run); Ctrl-C cleans up.
demo: deps build
	$(GO) run ./test/demo -pictl $(BIN)

# lab: seed 000's lab — two app nodes reading a row from a db node, two lb
# nodes sharing a VRRP address, a router — six Debian guests netbooted from
# pictl in a private network namespace (TCG: ~RAM 3 GiB; see README).
lab: deps build
	PICTL_LAB=1 $(GO) test -count=1 -timeout 60m -run '^TestSeedLab$$' -v ./test/e2e

clean:
	rm -rf bin
