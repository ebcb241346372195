# floriday-proxy: build, test, demo, benchmark.
#   make demo    install missing system packages, build, run the sandbox and the proxy
#   make test    install missing system packages, build, run every test
#   make bench   benchmark against nginx (see bench/)
#   make sanitize  every test under AddressSanitizer (leaks included) and ThreadSanitizer
#   make test-stress  the whole suite 10 times while stress-ng loads every core
#   make rate-limit-check  2,000 requests at one endpoint: no 429 from the sandbox, rate within 5 %

SWIFT ?= swift
SYSTEM_PACKAGES := libssl-dev libnghttp2-dev libhiredis-dev pkg-config
# docker-compose: validates the Compose file statically (no engine needed) during the tests;
# nghttp2-client: a second, independent HTTP/2 client in the tests; nghttp2-server: nghttpd, an independent h2 upstream;
# chromium: the status page in a real (headless) browser; prometheus: promtool checks the alert rules;
# redis-server: the shared rate budget's tests run against a real one; haproxy: checks docker/haproxy.cfg;
# python3-venv: kubernetes-validate and the generated clients (PyPI); default-jre-headless: openapi-generator
TEST_PACKAGES := $(SYSTEM_PACKAGES) docker-compose nghttp2-client nghttp2-server chromium prometheus redis-server python3-venv haproxy default-jre-headless
# stress-ng: loads the cores while `make test-stress` runs the suite
STRESS_PACKAGES := $(TEST_PACKAGES) stress-ng
BENCH_PACKAGES := nginx-light wrk curl openssl nghttp2-client nghttp2-proxy linux-perf redis-server

.PHONY: all build release test client-check rate-limit-check test-stress stress-deps sanitize asan tsan demo deps test-deps bench-deps bench latency fuzz soak churn clean

all: build

# Installs what the build needs with apt-get when run as root; otherwise says what to install.
deps: PACKAGES = $(SYSTEM_PACKAGES)
test-deps: PACKAGES = $(TEST_PACKAGES)
stress-deps: PACKAGES = $(STRESS_PACKAGES)
deps test-deps stress-deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing system packages:$$missing"; echo "install them with: sudo apt-get install -y$$missing"; exit 1; \
		fi; \
	fi

bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "install: sudo apt-get install -y$$missing"; exit 1; fi; \
	fi

build: deps
	$(SWIFT) build

# As shipped (and as the Docker image builds it): the Swift runtime linked in statically,
# which also keeps the resident set small (only the pages used are loaded).
release: deps
	$(SWIFT) build -c release --static-swift-stdlib

test: test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --no-parallel
	FLORIDAY_PROXY_BIN=$$($(SWIFT) build --show-bin-path)/floriday-proxy bash docker/validate.sh
	FLORIDAY_PROXY_BIN=$$($(SWIFT) build --show-bin-path)/floriday-proxy bash scripts/generated-client-check.sh
	FLORIDAY_PROXY_BIN=$$($(SWIFT) build --show-bin-path)/floriday-proxy bash docker/kubernetes/validate.sh

# Clients generated from the Floriday descriptions call every GET operation through the demo.
client-check: build test-deps
	bash scripts/generated-client-check.sh

# A burst of 2,000 requests for one key and endpoint through the proxy, against the sandbox
# enforcing the same limit (Floriday's 3.4/s burst 1000, 20 times faster): no 429 may reach
# the sandbox's limit and the admitted rate must stay within 5 % of the configured one.
# About 20 s of real time; not part of `make test`.
rate-limit-check: test-deps
	$(SWIFT) build --build-tests
	FLORIDAY_RATE_LIMIT_CHECK=1 $(SWIFT) test --skip-build --filter RateLimitCheck

# The whole test suite RUNS times in a row (default 10) while `stress-ng --cpu 2` keeps both
# cores of a two-core machine busy; every failure is reported with its test's name and run.
# About 15 minutes; not part of `make test`.
test-stress: stress-deps
	bash scripts/test-stress.sh $(or $(RUNS),10)

# The whole test suite under AddressSanitizer (with LeakSanitizer: a reference cycle left by a
# stopped server fails the run) and under ThreadSanitizer, each in a build directory of its own.
# Slower than `make test` and not part of it. The suppressions cover only memory that is not the
# project's own (see the file).
LSAN_SUPPRESSIONS := $(CURDIR)/scripts/lsan-suppressions.txt

sanitize: asan tsan

asan: test-deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(LSAN_SUPPRESSIONS):print_suppressions=0 \
		$(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan --no-parallel

tsan: test-deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --no-parallel

demo: build
	$$($(SWIFT) build --show-bin-path)/floriday-proxy demo

# Median latency added by the proxy over a direct request (loopback, cached token).
latency: release bench-deps
	bash bench/latency.sh

# Also builds the event-loop design that was measured and not shipped (a thread per loop
# blocking in epoll_wait; bench/NOTES.md) into .build-threadloop, as target D of the table.
bench: release bench-deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-threadloop -Xswiftc -DEVENTLOOP_THREAD_DRIVEN --product floriday-proxy
	THREADLOOP_BIN=$$($(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-threadloop --show-bin-path)/floriday-proxy bash bench/bench.sh

# libFuzzer on the HTTP/1.1 parsers (SECONDS, default 600).
fuzz: deps
	bash fuzz/run.sh $(or $(SECONDS),600)

# Mixed load with injected faults for SECONDS (default 300); checks RSS and fds stay flat.
soak: deps bench-deps
	bash scripts/soak.sh $(or $(SECONDS),300)

# Connection churn against the release build: CYCLES (default 100,000) connections ending in
# every way a client can end one, over both loops, beside keep-alive traffic; the process must
# stay up and its descriptors return to the baseline.
churn: deps bench-deps
	bash scripts/soak.sh --churn $(or $(CYCLES),100000)

clean:
	rm -rf .build .build-asan .build-tsan
